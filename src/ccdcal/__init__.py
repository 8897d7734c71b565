"""ccdcal: calibration of astronomical CCD/CMOS frames (overscan, bias, dark, flat).

The science lives here and knows nothing of Snakemake; the workflow in ``workflow/``
calls it through thin scripts. ``from ccdcal import Calibrator`` gives the low-level,
one-image-at-a-time interface (see ccdcal.calibrator).
"""

__version__ = "0.1.0"
__all__ = ["Calibrator", "__version__"]


def __getattr__(name):  # imported on first use: `import ccdcal.simulate` stays light
    if name == "Calibrator":
        from .calibrator import Calibrator

        return Calibrator
    raise AttributeError(f"module 'ccdcal' has no attribute {name!r}")
