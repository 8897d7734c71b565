"""Calibrate one group of lights that share their masters."""

import json
from pathlib import Path

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs.calibrate_lights import light_group_job  # noqa: E402
from ccdcal.output_dir import LIGHT_CACHE_DIR  # noqa: E402

light_group_job(
    json.loads(snakemake.params.group),
    json.loads(snakemake.params.camera),
    [*snakemake.input.masters, *snakemake.params.library],
    snakemake.output[0],
    snakemake.config,
    threads=snakemake.threads,
    noise=snakemake.input.noise,
    quality_stop=json.loads(snakemake.params.quality_stop or "null"),
    light_cache=Path(snakemake.config["output_dir"]) / LIGHT_CACHE_DIR,
)
