"""Build one master (bias, dark or flat) from its raw frames, and its report."""

import json

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs.build_master import master_job  # noqa: E402

master_job(
    json.loads(snakemake.params.spec),
    json.loads(snakemake.params.camera),
    [*snakemake.input.masters, *snakemake.params.library],
    snakemake.output.master,
    snakemake.config,
    threads=snakemake.threads,
    report=snakemake.output.report,
    noise=next(iter(snakemake.input.noise), None),
    quality_stop=json.loads(snakemake.params.quality_stop or "null"),
    preview=snakemake.output.preview,
)
