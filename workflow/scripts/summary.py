"""The night's quality checks (qc.csv), summary (summary.csv, summary.txt) and report pages."""

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs import night_summary_job  # noqa: E402

night_summary_job(
    snakemake.input.inventory,
    snakemake.input.plan,
    str(snakemake.params.output_dir),
    snakemake.config,
    qc_csv=snakemake.output.qc,
    summary_csv=snakemake.output.csv,
    summary_txt=snakemake.output.txt,
    pages=(
        snakemake.output.summary_page,
        snakemake.output.qc_page,
        snakemake.output.previews,
        snakemake.output.histograms,
        snakemake.output.plots,
        snakemake.output.lights,
    ),
    processes=snakemake.threads,
)
