"""File one master into the library (ccdcal.library describes the layout)."""

from ccdcal.jobs import file_in_library_job, setup_logging

setup_logging(snakemake.log[0])
file_in_library_job(snakemake.input[0], snakemake.output[0])
