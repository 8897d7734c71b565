"""Convert one PixInsight master into a ccdcal master product."""

import json

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs.import_master import import_master_job  # noqa: E402

import_master_job(
    json.loads(snakemake.params.spec),
    json.loads(snakemake.params.camera),
    json.loads(snakemake.params.settings),
    [*snakemake.input.masters, *snakemake.params.library],
    snakemake.output[0],
    snakemake.config,
    noise=next(iter(snakemake.input.noise), None),
    threads=snakemake.threads,
)
