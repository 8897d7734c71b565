"""Write summary.csv and summary.txt for the night."""

from ccdcal.jobs import setup_logging, summary_job

setup_logging(snakemake.log[0])
summary_job(
    snakemake.input.inventory,
    snakemake.input.plan,
    str(snakemake.params.output_dir),
    snakemake.output.csv,
    snakemake.output.txt,
)
