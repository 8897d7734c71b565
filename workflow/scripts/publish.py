"""Gather the light groups' calibrated frames into calibrated/, mirroring raw_dir."""

from ccdcal.jobs import publish_job, setup_logging

setup_logging(snakemake.log[0])
publish_job(snakemake.input, snakemake.output[0])
