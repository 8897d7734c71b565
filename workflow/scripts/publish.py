"""Gather the light groups' calibrated frames into calibrated/, mirroring raw_dir; prune
the light cache to them."""

from pathlib import Path

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.output_dir import LIGHT_CACHE_DIR  # noqa: E402
from ccdcal.publish import publish_job  # noqa: E402

publish_job(snakemake.input, snakemake.output[0], light_cache=Path(snakemake.config["output_dir"]) / LIGHT_CACHE_DIR)
