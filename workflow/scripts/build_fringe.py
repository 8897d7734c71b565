"""Make one fringe frame from tonight's lights of a band, and its report."""

import json

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs.build_fringe import fringe_job  # noqa: E402

fringe_job(
    json.loads(snakemake.params.spec),
    json.loads(snakemake.params.camera),
    [*snakemake.input.masters, *snakemake.params.library],
    snakemake.output.master,
    snakemake.config,
    threads=snakemake.threads,
    report=snakemake.output.report,
    noise=next(iter(snakemake.input.noise), None),
    preview=snakemake.output.preview,
)
