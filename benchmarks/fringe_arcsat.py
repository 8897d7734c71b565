"""Fringes on a real night (issue #20): the ARCSAT z-band lights, checked and removed.

    .venv/bin/python benchmarks/fringe_arcsat.py [--raw DIR] [--out DIR] [--calibrated DIR]

Calibrates the ARCSAT night (``shared/data/real/arcsat_dcam_20250601``) with the workflow
and ``config/examples/arcsat.yaml``, as a user would (or takes ``--calibrated``, an output
folder of such a run), then prints markdown tables:

1. whether the arcs are fringes: (a) the same pattern in every light (correlation of the
   31-px smoothed residuals, light against light); (b) not the flat (correlation with the
   master flat's smoothed structure; the lights' fringe frame fitted into the dome flats and
   into the raw lights, neither flat-fielded); (c) the amplitude (ADU) following the sky;
2. per light: sky (ADU), fitted amplitude (ADU), amplitude / sky, the fringe statistic
   (``ccdcal.fringe.fringe_statistic``) and the 1st-99th percentile range of the smoothed
   residual (fractions of the sky) before and after ``remove_fringes``, and UNCERT against
   the pixel scatter before and after.

The fringe frame is built from the ten XO1-b lights; the 43 Bet Com light (30 s) is not
an input. The science is
``ccdcal.fringe``'s; this script only measures. The fringe frame is written to
``<out>/fringe_z.fits`` for inspection.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from astropy.io import fits
from scipy.ndimage import uniform_filter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ccdcal.fringe import (  # noqa: E402
    FringeSettings,
    build_fringe_frame,
    fit_amplitude,
    fringe_statistic,
    measure_sky,
    remove_fringes,
)

SETTINGS = FringeSettings()


def calibrate(raw: Path, out: Path, fringe: bool = False) -> Path:
    """Run the workflow on ``raw`` with config/examples/arcsat.yaml into
    ``out/ccdcal-fringe`` (as it is: its fringe step on) or ``out/ccdcal`` (the fringe
    step off: the lights this script studies); the output folder."""
    import yaml

    target = out / ("ccdcal-fringe" if fringe else "ccdcal")
    config = yaml.safe_load((REPO / "config/examples/arcsat.yaml").read_text())
    if not fringe:
        for camera in config["cameras"]:
            camera.pop("fringe", None)
    configfile = out / f"{target.name}.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [
        str(snakemake),
        "--snakefile",
        "workflow/Snakefile",
        "--directory",
        str(REPO),
        "--workflow-profile",
        "profiles/default",
        "--cores",
        "2",
        "--configfile",
        str(configfile),
        "--config",
        f"raw_dir={raw}",
        f"output_dir={target}",
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    print(f"running: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=sys.stderr)  # stdout: the tables only
    return target


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ADU, UNCERT ADU, MASK) of a calibrated product, float32 / uint8."""
    with fits.open(path, memmap=False) as hdul:
        return (
            hdul[0].data.astype(np.float32),
            hdul["UNCERT"].data.astype(np.float32),
            np.asarray(hdul["MASK"].data, dtype=np.uint8),
        )


def smoothed(image: np.ndarray, mask: np.ndarray | None, sky=None) -> tuple[np.ndarray, np.ndarray, object]:
    """The map ``fringe_statistic`` takes the scatter of: the source-masked residual from
    the sky plane, box-smoothed, over the sky level (fraction of the sky); the pixels it
    uses (bool); the sky. Checked against ``fringe_statistic`` in ``percentile_range``."""
    sky = sky or measure_sky(image, mask, SETTINGS)
    good = sky.background.astype(np.float32)
    residual = np.where(sky.background, image - sky.plane(image.shape), 0.0).astype(np.float32)
    size = SETTINGS.smoothing
    weight = uniform_filter(good, size, mode="constant")
    smooth = uniform_filter(residual, size, mode="constant") / np.maximum(weight, 1e-6)
    half = size // 2
    use = np.zeros(image.shape, dtype=bool)
    use[half : image.shape[0] - half, half : image.shape[1] - half] = True
    use &= weight > 0.5
    return smooth / np.float32(sky.level), use, sky


def percentile_range(image: np.ndarray, mask: np.ndarray, sky=None) -> tuple[float, float]:
    """(fringe statistic, 1st-99th percentile range of the smoothed residual), fractions of
    the sky; ``sky`` (plane and sources) measured on ``image`` when not given (``remove_fringes``
    measures its after with the sky it measured before)."""
    smooth, use, sky = smoothed(image, mask, sky)
    statistic = fringe_statistic(image, mask, SETTINGS, sky)
    values = smooth[use]
    mad = 1.4826 * np.median(np.abs(values - np.median(values)))
    assert abs(mad - statistic) < 1e-3 * statistic, (mad, statistic)  # the same map as the library's
    low, high = np.percentile(values, [1, 99])
    return statistic, float(high - low)


def correlation(a: np.ndarray, b: np.ndarray, use: np.ndarray) -> float:
    """Pearson correlation of two maps over ``use``."""
    x, y = a[use].astype(np.float64), b[use].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))


def scatter_ratio(image: np.ndarray, uncert: np.ndarray, mask: np.ndarray) -> float:
    """Pixel scatter over UNCERT: robust sigma of horizontal neighbour differences / sqrt 2,
    over the median of their UNCERT (as tests/test_real_nights.py), good pixels only."""
    good = (mask[:, 1:] == 0) & (mask[:, :-1] == 0) & np.isfinite(uncert[:, 1:]) & np.isfinite(uncert[:, :-1])
    diff = (image[:, 1:] - image[:, :-1])[good].astype(np.float64)
    measured = 1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2)
    model = np.median(np.sqrt(0.5 * (uncert[:, 1:].astype(np.float64) ** 2 + uncert[:, :-1] ** 2))[good])
    return float(measured / model)


def fringe_content(image: np.ndarray, mask: np.ndarray, uncert: np.ndarray, frame) -> float:
    """The fringe frame's amplitude in ``image`` over its sky level (1: as much as the
    lights' average; ``ccdcal.fringe.fit_amplitude``)."""
    sky = measure_sky(image, mask, SETTINGS)
    amplitude, _ = fit_amplitude(image, uncert, sky, frame.data, frame.uncert, frame.mask, SETTINGS.fit_bin)
    return amplitude / sky.level


def smoothed_amplitude(light: np.ndarray, use: np.ndarray, frame_map: np.ndarray, frame_use: np.ndarray) -> float:
    """The fringe frame's amplitude in a light, over its sky, fitted (with a plane) on the
    smoothed maps of ``smoothed``, where pixel noise is averaged away."""
    both = use & frame_use
    yy, xx = np.nonzero(both)
    design = np.stack([frame_map[both], np.ones(yy.size), xx, yy], axis=1).astype(np.float64)
    return float(np.linalg.lstsq(design, light[both].astype(np.float64), rcond=None)[0][0])


def star_fluxes(before: np.ndarray, after: np.ndarray, frame, count: int = 3) -> list[list[str]]:
    """The ``count`` brightest isolated stars (3x3 mean peak, > 40 px from the edge): aperture
    flux (r < 10 px, less the median of r = 20-30 px, ADU) before and after the removal."""
    from scipy.ndimage import maximum_filter

    peaks = uniform_filter(np.nan_to_num(before), 3)
    ys, xs = np.nonzero((peaks == maximum_filter(peaks, 41)) & (peaks > 1000))
    keep = (np.minimum(ys, xs) > 40) & (np.minimum(before.shape[0] - ys, before.shape[1] - xs) > 40)
    ys, xs = ys[keep], xs[keep]
    rows = []
    for index in np.argsort(-peaks[ys, xs])[:count]:
        y, x = ys[index], xs[index]
        box = (slice(y - 31, y + 32), slice(x - 31, x + 32))
        r = np.hypot(*np.ogrid[-31:32, -31:32])
        ring = (r > 20) & (r < 30)
        flux = [float(np.nansum((img[box] - np.nanmedian(img[box][ring]))[r < 10])) for img in (before, after)]
        rows.append(
            [
                f"{x}, {y}",
                f"{peaks[y, x]:.0f}",
                f"{flux[0]:.0f}",
                f"{flux[1]:.0f}",
                f"{100 * (flux[1] / flux[0] - 1):+.2f} %",
                f"{frame.data[box][r < 10].mean():.3f}, {np.median(frame.data[box][ring]):.3f}",
                f"{int(((frame.mask[box] != 0) & (r < 10)).sum())}",
            ]
        )
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=REPO.parent / "shared/data/real/arcsat_dcam_20250601")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ccdcal-fringe-arcsat"), help="work dir")
    parser.add_argument("--calibrated", type=Path, help="an output folder of the workflow on the night (no run)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    output = args.calibrated or calibrate(args.raw.resolve(), args.out.resolve())
    paths = sorted((output / "calibrated").glob("*.fits"))
    inputs = [p for p in paths if p.name.startswith("XO1-b_z_")]
    others = [p for p in paths if p not in inputs]
    if len(inputs) < SETTINGS.min_frames:
        raise SystemExit(f"{output}: {len(inputs)} XO1-b z lights, need {SETTINGS.min_frames}")
    (flat_path,) = sorted((output / "masters").glob("flat_*.fits"))
    (bias_path,) = sorted((output / "masters").glob("bias_*.fits"))
    (dark_path,) = sorted((output / "masters").glob("dark_*_60s.fits"))
    print(f"# Fringes on the ARCSAT z lights\n\ncalibrated: `{output}`; raw: `{args.raw}`\n")

    # --- is it the same pattern in every light? (smoothed residual maps, fractions of the sky)
    maps, uses = {}, {}
    for path in paths:
        image, _, mask = load(path)
        maps[path.name], uses[path.name], _ = smoothed(image, mask)
    names = [p.name for p in inputs]
    pairs = [correlation(maps[a], maps[b], uses[a] & uses[b]) for i, a in enumerate(names) for b in names[i + 1 :]]
    mean_map = np.mean([maps[n] for n in names], axis=0)
    mean_use = np.logical_and.reduce([uses[n] for n in names])

    # --- dithering: the pointing from each light's WCS (CRVAL at a fixed CRPIX), in pixels
    headers = [fits.getheader(path) for path in inputs]
    first = headers[0]
    offsets = np.array(
        [
            (
                (h["CRVAL1"] - first["CRVAL1"]) * math.cos(math.radians(first["CRVAL2"])) / abs(first["CD1_1"]),
                (h["CRVAL2"] - first["CRVAL2"]) / abs(first["CD2_2"]),
            )
            for h in headers
        ]
    )

    # --- the fringe frame of the ten XO1-b lights
    frame = build_fringe_frame((load(p) for p in inputs), SETTINGS, args.out)
    fits.HDUList(
        [
            fits.PrimaryHDU(frame.data, fits.Header([(k, *v) for k, v in frame.cards.items()])),
            fits.ImageHDU(frame.uncert, name="UNCERT"),
            fits.ImageHDU(frame.mask, name="MASK"),
        ]
    ).writeto(args.out / "fringe_z.fits", overwrite=True)
    frame_scatter = scatter_ratio(frame.data, np.ones_like(frame.uncert), frame.mask)
    frame_map, frame_use, _ = smoothed(frame.data + np.float32(1.0), frame.mask)  # filled pixels left out

    # --- not the flat: the master flat's structure, the dome flats and the raw lights
    flat, flat_uncert, flat_mask = load(flat_path)
    flat_map, flat_use, _ = smoothed(flat, flat_mask)
    bias = load(bias_path)[0]
    dark = load(dark_path)[0]
    flat_rows = [
        [
            "master flat (normalized)",
            f"{correlation(mean_map, flat_map, mean_use & flat_use):+.3f}",
            f"{fringe_statistic(flat, flat_mask, SETTINGS):.4f}",
            f"{fringe_content(flat, flat_mask, flat_uncert, frame):+.3f}",
        ]
    ]
    for path in sorted(args.raw.glob("domeflat_z_*.fits")):
        image = fits.getdata(path).astype(np.float32) - bias  # 76-83 s: the dark current (~8 ADU) is left in
        noise = np.sqrt(np.maximum(image, 1.0) / 1.34 + 12.0**2).astype(np.float32)  # weights only
        raw_map, raw_use, _ = smoothed(image, flat_mask)
        flat_rows.append(
            [
                f"raw {path.name} - bias",
                f"{correlation(mean_map, raw_map, mean_use & raw_use):+.3f}",
                f"{fringe_statistic(image, flat_mask, SETTINGS):.4f}",
                f"{fringe_content(image, flat_mask, noise, frame):+.3f}",
            ]
        )
    for path in inputs[:3]:
        image = fits.getdata(args.raw / path.name).astype(np.float32) - dark  # 60 s dark, bias included
        _, uncert, mask = load(path)
        raw_map, raw_use, _ = smoothed(image, mask)
        flat_rows.append(
            [
                f"raw {path.name} - dark (no flat)",
                f"{correlation(mean_map, raw_map, mean_use & raw_use):+.3f}",
                f"{fringe_statistic(image, mask, SETTINGS):.4f}",
                f"{fringe_content(image, mask, uncert * flat, frame):+.3f}",
            ]
        )

    # --- per light: remove, measure
    rows, fits_, smooth_fits, stars = [], {}, {}, []
    for path in paths:
        image, uncert, mask = load(path)
        smooth_fits[path.name] = smoothed_amplitude(maps[path.name], uses[path.name], frame_map, frame_use)
        original = image.copy()
        floor = float(np.nanmedian(uncert[mask == 0])) / SETTINGS.smoothing
        sky = measure_sky(image, mask, SETTINGS)
        stat_before, range_before = percentile_range(image, mask, sky)
        ratio_before = scatter_ratio(image, uncert, mask)
        fit = remove_fringes(image, uncert, mask, frame.data, frame.uncert, frame.mask, SETTINGS)
        stat_after, range_after = percentile_range(image, mask, sky)
        fits_[path.name] = fit
        if path == inputs[len(inputs) // 2]:
            stars = star_fluxes(original, image, frame)
        rows.append(
            [
                path.name,
                f"{fits.getheader(path)['EXPTIME']:.0f}",
                "yes" if path in inputs else "no",
                f"{fit.sky:.1f}",
                f"{fit.amplitude:.2f} ± {fit.amplitude_error:.2f}",
                f"{fit.relative:.3f}",
                f"{smooth_fits[path.name]:.3f}",
                f"{100 * floor / fit.sky:.2f}",
                f"{100 * stat_before:.2f} → {100 * stat_after:.2f}",
                f"{100 * range_before:.2f} → {100 * range_after:.2f}",
                f"{ratio_before:.3f} → {scatter_ratio(image, uncert, mask):.3f}",
            ]
        )
        assert abs(stat_before - fit.before) < 1e-6 and abs(stat_after - fit.after) < 1e-6

    print("## Is it fringing?\n")
    print(
        f"(a) Fixed on the detector: the smoothed residuals ({SETTINGS.smoothing}-px box, sources masked) of the "
        f"{len(names)} XO1-b lights correlate pairwise at {min(pairs):.3f}-{max(pairs):.3f} "
        f"(median {np.median(pairs):.3f}); each with the fringe frame built from all of them:"
    )
    rows_a = [[n, f"{correlation(maps[n], frame_map, uses[n] & frame_use):+.3f}"] for n in maps]
    print()
    print(table(["light", "corr. with fringe frame"], rows_a))
    shift = np.hypot(*(offsets - offsets.mean(axis=0)).T)
    print(
        f"\nDithering: the pointing (WCS CRVAL) drifts by {np.ptp(offsets[:, 0]):.1f} px in x and "
        f"{np.ptp(offsets[:, 1]):.1f} px in y over the {len(names)} lights (largest distance from the mean "
        f"{shift.max():.1f} px): a slow drift, not a dither. Fringe frame: "
        f"NCOMBINE {frame.cards['NCOMBINE'][0]}, FRNGFILL {frame.cards['FRNGFILL'][0]} px, "
        f"FRNGRMS {frame.cards['FRNGRMS'][0]}, FRNGNOIS {frame.cards['FRNGNOIS'][0]}; "
        f"frames per pixel: median {np.median(frame.count):.0f}, "
        f"under half: {(frame.count < len(names) / 2).sum()} px. "
        f"Its pixel scatter (robust, neighbour differences / sqrt 2) is {frame_scatter:.4f} of the sky, "
        f"{frame_scatter / frame.cards['FRNGNOIS'][0]:.2f} x its median UNCERT."
    )
    print(
        "\n(b) Not the flat: correlation of the lights' mean smoothed residual with each frame's smoothed "
        "structure, that frame's fringe statistic (fraction of its level), and the fringe frame fitted into it "
        "(`fit_amplitude` / its level: 1 = as much as the calibrated lights' average):\n"
    )
    print(table(["frame", "corr. with lights' pattern", "statistic", "fringe content"], flat_rows))
    sixty = [fits_[n] for n in names]
    skies = np.array([f.sky for f in sixty])
    amplitudes = np.array([f.amplitude for f in sixty])
    slope = float((skies * amplitudes).sum() / (skies * skies).sum())
    print(
        f"\n(c) Amplitude with the sky: over the 60 s lights the sky is {skies.min():.1f}-{skies.max():.1f} ADU and "
        f"the amplitude {amplitudes.min():.1f}-{amplitudes.max():.1f} ADU (correlation "
        f"{np.corrcoef(skies, amplitudes)[0, 1]:+.2f}; amplitude / sky {np.min(amplitudes / skies):.3f}-"
        f"{np.max(amplitudes / skies):.3f}, a = {slope:.3f} S through the origin)."
    )
    for name in [p.name for p in others]:
        fit = fits_[name]
        print(
            f"{name} ({fits.getheader(output / 'calibrated' / name)['EXPTIME']:.0f} s): sky {fit.sky:.1f} ADU, "
            f"amplitude {fit.amplitude:.2f} ± {fit.amplitude_error:.2f} ADU, amplitude / sky {fit.relative:.3f} "
            f"(60 s: {np.median(amplitudes / skies):.3f}; amplitude ratio to the 60 s median "
            f"{fit.amplitude / np.median(amplitudes):.3f}, sky ratio {fit.sky / np.median(skies):.3f})."
        )
    smooth_60 = np.array([smooth_fits[n] for n in names]) * skies
    print(
        f"The same fit on the {SETTINGS.smoothing}-px smoothed maps (pixel noise averaged away; `smoothed fit` "
        f"below): 60 s amplitudes {smooth_60.min():.1f}-{smooth_60.max():.1f} ADU, correlation with the sky "
        f"{np.corrcoef(skies, smooth_60)[0, 1]:+.2f}, amplitude / sky {np.min(smooth_60 / skies):.3f}-"
        f"{np.max(smooth_60 / skies):.3f}; " + "; ".join(f"{p.name}: {smooth_fits[p.name]:.3f}" for p in others) + "."
    )
    print("\n## Removing it\n")
    print(
        "amplitude: `remove_fringes`' fit (ADU, 1 sigma); smoothed fit / sky: least squares of the light's smoothed "
        "map on the fringe frame's (with a plane); floor: what pixel noise alone gives the statistic, median "
        f"UNCERT / {SETTINGS.smoothing} / sky (%); statistic: robust scatter of the smoothed residual / sky (%); "
        "range: its 1st-99th percentile range / sky (%); scatter / UNCERT: robust sigma of neighbour differences "
        "/ sqrt 2 over their median UNCERT.\n"
    )
    header = ["light", "s", "input", "sky ADU", "amplitude ADU", "amp. / sky", "smoothed fit / sky", "floor %"]
    header += ["statistic %", "range %"]
    print(table([*header, "scatter / UNCERT"], rows))
    print(
        f"\nBright stars of {inputs[len(inputs) // 2].name}: flux in r < 10 px over the median of r = 20-30 px, "
        "before and after the removal (the fringe frame's value there, fraction of the sky; FRINGEFILL pixels):\n"
    )
    print(
        table(
            ["x, y (0-based)", "peak ADU", "flux before", "flux after", "change", "F in r<10, annulus", "filled px"],
            stars,
        )
    )
    workflow_step(calibrate(args.raw.resolve(), args.out.resolve(), fringe=True))
    return 0


def workflow_step(output: Path) -> None:
    """The workflow's own fringe step on the night (config/examples/arcsat.yaml): its
    fringe frame's inputs and each light's header cards."""
    (frame_path,) = sorted((output / "masters").glob("fringe_*.fits"))
    frame = fits.getheader(frame_path)
    inputs = [unquote(str(frame[k])) for k in frame if k.startswith("IMCMB")]
    print("\n## The workflow's fringe step (`config/examples/arcsat.yaml`: `fringe: {filters: [z]}`)\n")
    print(
        f"Fringe frame `{frame_path.name}`: NCOMBINE {frame['NCOMBINE']}, FRNGFILL {frame['FRNGFILL']} px, "
        f"NOISEFAC {frame['NOISEFAC']}, FRNGRMS {frame['FRNGRMS']}; made from: " + ", ".join(f"`{p}`" for p in inputs)
    )
    print()
    rows = []
    for path in sorted((output / "calibrated").glob("*.fits")):
        h = fits.getheader(path)
        rows.append(
            [
                path.name,
                f"{h['FRNGAMP']:.2f} ± {h['FRNGAERR']:.2f}",
                f"{h['FRNGREL']:.3f}",
                f"{100 * h['FRNGBEF']:.2f} → {100 * h['FRNGAFT']:.2f}",
            ]
        )
    print(table(["light", "FRNGAMP ADU", "FRNGREL", "FRNGBEF → FRNGAFT %"], rows))


if __name__ == "__main__":
    sys.exit(main())
