"""File one master into the library (ccdcal.library describes the layout)."""

from ccdcal.joblog import setup_logging

setup_logging(snakemake.log[0])  # before the job's code is imported: an import error is logged too
from ccdcal.jobs.file_in_library import file_in_library_job  # noqa: E402

file_in_library_job(snakemake.input[0], snakemake.output[0])
