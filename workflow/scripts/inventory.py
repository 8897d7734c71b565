"""Inventory checkpoint: read every raw file's header, write inventory.csv, plan.json, matches.csv."""

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs import inventory_job  # noqa: E402

inventory_job(
    snakemake.params.files,
    snakemake.config,
    snakemake.output.inventory,
    snakemake.output.plan,
    snakemake.output.matches,
    unreadable_folders=snakemake.params.unreadable_folders,
    threads=snakemake.threads,
)
