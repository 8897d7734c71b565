"""ccdcal: calibration of astronomical CCD/CMOS frames (overscan, bias, dark, flat).

The science lives here and knows nothing of Snakemake; the workflow in ``workflow/``
calls it through thin scripts.
"""

__version__ = "0.1.0"
