"""Measure one setup's gain and read noise and decide the values its frames use."""

import json

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs.measure_noise import noise_job  # noqa: E402

noise_job(
    json.loads(snakemake.params.plan),
    json.loads(snakemake.params.camera),
    snakemake.output[0],
    snakemake.config,
    threads=snakemake.threads,
)
