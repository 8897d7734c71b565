"""Quality checks of a night: statistics measured where the data are in memory, and the
verdicts (pass / warn / fail) against the configured limits (``qc.limits``).

Rows of ``qc.csv`` (``QC_COLUMNS``): ``subject`` (a setup, a master, a raw frame, a light or
'night'), ``check``, ``value``, ``limit`` (the limits it was judged by, as text),
``verdict`` and a one-line ``note``. Nothing here reads files: the jobs hand in what they
measured (``light_statistics`` in the light jobs, ``master_statistics`` in the master jobs,
the noise records' overscan and gain figures), and ``night_checks`` turns them into rows.

Units: levels and noise in ADU (after overscan correction), gain in e-/ADU, read noise in
e-, dark current in e-/s, fractions 0-1. numpy arrays are [y, x].
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bottleneck as bn
import numpy as np

from .products import BADPIX, SATURATED, WEAKFLAT

QC_COLUMNS = ["subject", "check", "value", "limit", "verdict", "note"]
VERDICTS = ("pass", "warn", "fail")
#: Cells per side over which a calibrated light's large-scale residual is measured.
LIGHT_CELLS = 16


@dataclass(frozen=True)
class Check:
    subject: str
    check: str
    value: Any
    limit: str
    verdict: str
    note: str

    def row(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "check": self.check,
            "value": _text(self.value),
            "limit": self.limit,
            "verdict": self.verdict,
            "note": self.note,
        }


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return "" if value is None else str(value)


def judge(value: float | None, limit: Mapping[str, float | None]) -> tuple[str, str]:
    """(verdict, limit text) of ``value`` against ``limit`` = {warn_above, fail_above,
    warn_below, fail_below} (any may be absent or None). None or NaN fails: a quantity
    that should have been measured was not."""
    parts = []
    for key, sign in (("warn_below", "<"), ("fail_below", "<"), ("warn_above", ">"), ("fail_above", ">")):
        if limit.get(key) is not None:
            parts.append(f"{key.split('_')[0]} {sign} {limit[key]:g}")
    text = "; ".join(parts)
    if value is None or not math.isfinite(value):
        return "fail", text
    if (limit.get("fail_above") is not None and value > limit["fail_above"]) or (
        limit.get("fail_below") is not None and value < limit["fail_below"]
    ):
        return "fail", text
    if (limit.get("warn_above") is not None and value > limit["warn_above"]) or (
        limit.get("warn_below") is not None and value < limit["warn_below"]
    ):
        return "warn", text
    return "pass", text


def checked(subject: str, check: str, value: float | None, limit: Mapping[str, float | None], note: str) -> Check:
    verdict, text = judge(value, limit)
    return Check(subject, check, value, text, verdict, note)


def info(subject: str, check: str, value: Any, note: str) -> Check:
    """A figure recorded for a person, with no limit (always 'pass')."""
    return Check(subject, check, value, "", "pass", note)


# ----------------------------------------------------------------------------- statistics


def _robust_sigma(values: np.ndarray) -> float:
    if values.size == 0:
        return float("nan")
    median = np.median(values)
    return float(1.4826 * np.median(np.abs(values - median)))


#: Pixels a light's statistics read at most: whole rows, evenly spaced (the checks cost
#: ~4 ms a light whatever its size).
LIGHT_SAMPLE_PIXELS = 2**16


def _superpixels(
    image: np.ndarray, uncert: np.ndarray, mask: np.ndarray, max_pixels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A colour (Bayer) frame's 2 x 2 cells, on evenly spaced pairs of rows holding at
    most ``max_pixels`` pixels: each cell's mean (every cell holds the same colours, so
    the mosaic's colour steps are gone), the UNCERT of that mean and the OR of its MASK."""
    ny, nx = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    step = max(1, math.ceil(image.size / max_pixels))
    parts = [(slice(dy, ny, 2 * step), slice(dx, nx, 2)) for dy in (0, 1) for dx in (0, 1)]
    mean = sum(image[rows, c].astype(np.float32) for rows, c in parts) * np.float32(0.25)
    sigma = np.sqrt(sum(np.square(uncert[rows, c], dtype=np.float32) for rows, c in parts)) * np.float32(0.25)
    flags = np.bitwise_or.reduce([mask[rows, c] for rows, c in parts])
    return mean, sigma, flags


def light_statistics(
    image: np.ndarray,
    uncert: np.ndarray,
    mask: np.ndarray,
    max_pixels: int = LIGHT_SAMPLE_PIXELS,
    colour: bool = False,
) -> dict[str, float]:
    """What a calibrated light says about its calibration (ADU, fractions), measured on
    evenly spaced whole rows holding at most ``max_pixels``:

    ``sky``: median of the good pixels (MASK = 0, finite); ``noise_ratio``: robust
    pixel-to-pixel noise (1.4826 MAD of neighbour differences along x, / sqrt 2) over the
    median UNCERT (1 when UNCERT is right; stars raise it a little); ``masked`` and
    ``saturated``: fractions of the pixels; ``gradient``: the range over the frame of a
    plane fitted to the medians of LIGHT_CELLS x LIGHT_CELLS cells (outlying cells left
    out), over the sky (a flat from another illumination leaves one; so does the moon);
    ``flatness``: the 16-84 % range of the cells' medians about that plane, over the sky
    (vignetting, dust or fringes the flat did not remove). A ``colour`` (Bayer) frame
    is measured on its 2 x 2 cells' means (``_superpixels``): neighbouring pixels of
    different colours differ by the colours' levels, not by noise.
    """
    if colour:
        image, uncert, mask = _superpixels(image, uncert, mask, max_pixels)
    else:
        step = max(1, math.ceil(image.size / max_pixels))
        image, uncert, mask = image[::step], uncert[::step], mask[::step]
    good = (mask == 0) & np.isfinite(image) & np.isfinite(uncert)
    pixels = image.size
    stats = {"masked": float(1 - good.sum() / pixels), "saturated": float(np.count_nonzero(mask & SATURATED) / pixels)}
    values = image[good]
    sky = float(np.median(values)) if values.size else float("nan")
    pair = good[:, 1:] & good[:, :-1]
    differences = (image[:, 1:] - image[:, :-1])[pair]
    noise = _robust_sigma(differences) / math.sqrt(2)
    typical = (
        float(np.median(np.sqrt(0.5 * (uncert[:, 1:] ** 2 + uncert[:, :-1] ** 2))[pair]))
        if differences.size
        else float("nan")
    )
    stats.update(sky=sky, noise=noise, noise_ratio=noise / typical if typical > 0 else float("nan"))
    gradient, flatness = _large_scale(image, good, sky)
    stats.update(gradient=gradient, flatness=flatness)
    return stats


def _large_scale(image: np.ndarray, good: np.ndarray, sky: float) -> tuple[float, float]:
    ny, nx = image.shape
    cells = LIGHT_CELLS
    if not (sky > 0) or ny < cells or nx < cells:
        return float("nan"), float("nan")
    cy, cx = ny // cells, nx // cells
    block = np.where(good, image, np.nan)[: cy * cells, : cx * cells].astype(np.float32)
    block = block.reshape(cells, cy, cells, cx).transpose(0, 2, 1, 3).reshape(cells, cells, cy * cx)
    usable = np.count_nonzero(np.isfinite(block), axis=2) > 0.5 * cy * cx
    medians = np.where(usable, bn.nanmedian(block, axis=2), np.nan)
    yy, xx = np.mgrid[0:cells, 0:cells] / (cells - 1.0) - 0.5
    use = np.isfinite(medians)
    # a plane through the cells, refitted without the cells far from it (a bright star's
    # halo, a galaxy): 3 x 1.4826 MAD of the residuals, three times
    for _ in range(3):
        if use.sum() < 6:
            return float("nan"), float("nan")
        design = np.column_stack([np.ones(use.sum()), xx[use], yy[use]])
        coefficients, *_ = np.linalg.lstsq(design, medians[use], rcond=None)
        plane = coefficients[0] + coefficients[1] * xx + coefficients[2] * yy
        residual = medians - plane
        spread = _robust_sigma(residual[use])
        use = np.isfinite(medians) & (np.abs(residual) <= 3 * spread + 1e-9 * abs(sky))
    gradient = float(math.hypot(coefficients[1], coefficients[2]) / sky)
    low, high = np.percentile(residual[np.isfinite(medians)], [16, 84])
    return gradient, float((high - low) / sky)


def master_statistics(kind: str, data: np.ndarray, uncert: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """What a master says about itself: ``level`` (median, ADU or 1 for a flat),
    ``noise`` (robust scatter of the pixels about their 5 x 5 neighbourhood median, x
    sqrt(25/24) for the median's own share: the pixel-to-pixel noise without the
    large-scale structure; fixed-pattern noise counts), ``expected`` (median UNCERT),
    ``minimum``/``maximum`` (0.1 and 99.9 percentiles), ``badpix`` and ``weak``
    fractions (MASK bits)."""
    from scipy.ndimage import median_filter

    finite = np.isfinite(data)
    values = data[finite]
    stats = {
        "level": float(np.median(values)) if values.size else float("nan"),
        "expected": float(np.median(uncert[finite])) if values.size else float("nan"),
        "badpix": float(np.count_nonzero(mask & BADPIX) / data.size),
        "pixels": int(data.size),
        "weak": float(np.count_nonzero(mask & WEAKFLAT) / data.size),
    }
    low, high = np.percentile(values, [0.1, 99.9]) if values.size else (np.nan, np.nan)
    stats.update(minimum=float(low), maximum=float(high))
    sample = data[: min(data.shape[0], 512), : min(data.shape[1], 512)].astype(np.float32)
    smooth = median_filter(np.nan_to_num(sample, nan=stats["level"]), size=5, mode="nearest")
    residual = (sample - smooth)[np.isfinite(sample)]
    stats["noise"] = _robust_sigma(residual) * math.sqrt(25 / 24)
    return stats


def star_coverage(star_masks: Iterable[np.ndarray | None], shape: tuple[int, int]) -> float | None:
    """Fraction of the pixels where stars sat in half or more of the sky flats (the
    telescope did not move between them: the combine cannot remove those stars).
    ``star_masks``: each flat's star pixels (bool images, or flat indices); None when the
    flats' stars were not detected."""
    masks = [m for m in star_masks if m is not None]
    if not masks:
        return None
    count = np.zeros(shape[0] * shape[1], dtype=np.uint16)
    for stars in masks:
        indices = np.flatnonzero(stars) if stars.dtype == bool else stars
        count[indices] += 1
    return float(np.count_nonzero(count >= max(2, math.ceil(len(masks) / 2))) / count.size)


# ----------------------------------------------------------------------------- verdicts


def setup_checks(record: Mapping[str, Any], limits: Mapping[str, Mapping[str, float]]) -> list[Check]:
    """Checks of a setup's noise record (``night_noise.measure_setup``): each amplifier's
    overscan (does it see light; noise against the read noise; the image's bias level
    after it), the gain and the read noise against the values given."""
    subject = record["name"]
    rows: list[Check] = []
    for amp in record.get("overscan", []):
        where = f"camera {record['setup']['camera']}, amplifier {amp['amplifier']}, overscan {amp['section']}"
        if amp.get("light_fraction") is not None:
            rows.append(
                checked(
                    subject,
                    f"overscan_light_{amp['amplifier']}",
                    amp["light_fraction"],
                    limits["overscan_light"],
                    f"{where}: level in flats {amp['flat_excess']:+.1f} ADU against the biases' "
                    f"for {amp['flat_signal']:.0f} ADU of signal"
                    + (
                        " -- it sees light: not an overscan"
                        if amp["light_fraction"] > limits["overscan_light"].get("warn_above", math.inf)
                        else ""
                    ),
                )
            )
        if amp.get("noise_ratio") is not None:
            rows.append(
                checked(
                    subject,
                    f"overscan_noise_{amp['amplifier']}",
                    amp["noise_ratio"],
                    limits["overscan_noise"],
                    f"{where}: pixel noise {amp['noise']:.3g} ADU against the read noise {amp['read_noise']:.3g} ADU",
                )
            )
        if amp.get("bias_residual") is not None:
            rows.append(
                checked(
                    subject,
                    f"overscan_bias_level_{amp['amplifier']}",
                    abs(amp["bias_residual"]),
                    limits["overscan_bias_level"],
                    f"{where}: a bias's image area after overscan correction is at "
                    f"{amp['bias_residual']:+.2f} ADU (0 when the overscan is the bias level)",
                )
            )
        if amp.get("levels"):
            drift = max(amp["levels"]) - min(amp["levels"])
            rows.append(
                checked(
                    subject,
                    f"overscan_drift_{amp['amplifier']}",
                    drift,
                    limits["overscan_drift"],
                    f"{where}: overscan level {min(amp['levels']):.1f}-{max(amp['levels']):.1f} ADU "
                    f"over {len(amp['levels'])} frames",
                )
            )
    measured = record.get("measured", {})
    gain_warnings = [w for w in record.get("warnings", []) if "gain" in w.split(":")[0]]
    m_gain = measured.get("gain")
    if "NOGAIN" in record.get("flags", []):
        rows.append(
            Check(
                subject,
                "gain",
                None,
                "known or measured",
                "warn",
                "gain unknown: 1.0 e-/ADU used, lights flagged NOGAIN",
            )
        )
    else:
        note = f"used {record['gain']:.4g} e-/ADU ({record['gain_source']})"
        if m_gain:
            note += f"; measured {m_gain['value']:.4g} +- {m_gain['error']:.2g}"
        if gain_warnings:
            note += "; " + gain_warnings[0]
        rows.append(
            Check(
                subject,
                "gain",
                record["gain"],
                "given = measured within 3 sigma",
                "warn" if gain_warnings else "pass",
                note,
            )
        )
    rn_warnings = [w for w in record.get("warnings", []) if w.startswith("read noise")]
    if "NORDNOISE" in record.get("flags", []):
        rows.append(
            Check(
                subject, "read_noise", None, "known or measured", "warn", "read noise unknown: lights flagged NORDNOISE"
            )
        )
    else:
        note = f"used {record['read_noise_e']:.4g} e- ({record['read_noise_source']})"
        rows.append(
            Check(
                subject,
                "read_noise",
                record["read_noise_e"],
                "given = measured within 3 sigma",
                "warn" if rn_warnings else "pass",
                note + ("; " + rn_warnings[0] if rn_warnings else ""),
            )
        )
    for problem in record.get("problems", []):
        rows.append(Check(subject, "noise_frames", None, "", "warn", f"not used: {problem}"))
    return rows


def master_checks(
    name: str, kind: str, report: Mapping[str, Any], limits: Mapping[str, Mapping[str, float]]
) -> list[Check]:
    """Checks of one master from its report's ``qc`` section (``master_statistics`` and,
    for flats, each input's level and the star coverage)."""
    qc = report.get("qc") or {}
    if not qc:
        return []
    rows = [info(name, "level", qc["level"], f"median of the master ({'normalized' if kind == 'flat' else 'ADU'})")]
    if kind == "bias":
        ratio = qc["noise"] / qc["expected"] if qc["expected"] > 0 else float("nan")
        rows.append(
            checked(
                name,
                "bias_noise",
                ratio,
                limits["master_noise"],
                f"pixel noise {qc['noise']:.3g} ADU against its UNCERT {qc['expected']:.3g} "
                f"(read noise / sqrt(N)); above: fixed-pattern noise or noisy frames",
            )
        )
    if kind == "dark":
        if qc.get("dark_current") is not None:
            rows.append(info(name, "dark_current", qc["dark_current"], "median dark current, e-/s"))
        rows.append(
            checked(
                name,
                "hot_pixels",
                qc["badpix"],
                limits["hot_pixels"],
                f"{qc['badpix'] * 100:.3g} % of the pixels hot (BADPIX)",
            )
        )
        previous = qc.get("library_dark_current")
        if previous and qc.get("dark_current") is not None and previous["value"] > 0:
            ratio = qc["dark_current"] / previous["value"]
            rows.append(
                checked(
                    name,
                    "dark_current_change",
                    ratio,
                    limits["dark_current_change"],
                    f"{qc['dark_current']:.3g} e-/s against {previous['value']:.3g} in "
                    f"{previous['master']} ({previous['date']}) at the same temperature",
                )
            )
            if previous.get("hot_pixels"):
                now = round(qc["badpix"] * qc.get("pixels", 0)) if qc.get("pixels") else None
                if now is not None:
                    rows.append(
                        info(
                            name,
                            "hot_pixels_change",
                            now - previous["hot_pixels"],
                            f"{now} hot pixels against {previous['hot_pixels']} in "
                            f"{previous['master']} ({previous['date']})",
                        )
                    )
    if kind == "flat":
        saturation = qc.get("saturation")
        for entry in qc.get("inputs", []):
            rows.append(
                checked(
                    entry["path"],
                    "flat_level",
                    entry["level"],
                    limits["flat_level"],
                    f"input of {name}: median {entry['level']:.0f} ADU",
                )
            )
            if saturation:
                rows.append(
                    checked(
                        entry["path"],
                        "flat_near_saturation",
                        entry["peak"] / saturation,
                        limits["flat_saturation"],
                        f"input of {name}: 99.9 % of its pixels below {entry['peak']:.0f} ADU, "
                        f"saturation {saturation:.0f} ADU",
                    )
                )
        rows.append(
            info(
                name,
                "flat_range",
                f"{qc['minimum']:.3f}-{qc['maximum']:.3f}",
                "0.1-99.9 % range of the normalized master",
            )
        )
        rows.append(
            checked(
                name,
                "weak_pixels",
                qc["weak"],
                limits["weak_pixels"],
                f"{qc['weak'] * 100:.3g} % of the pixels below the weak threshold (WEAKFLAT)",
            )
        )
        if qc.get("star_coverage") is not None:
            rows.append(
                checked(
                    name,
                    "star_coverage",
                    qc["star_coverage"],
                    limits["star_coverage"],
                    f"{qc['star_coverage'] * 100:.3g} % of the pixels had a star in half or more "
                    "of the flats, which no combine removes (the telescope did not move "
                    "between the flats)",
                )
            )
    return rows


def light_checks(row: Mapping[str, Any], limits: Mapping[str, Mapping[str, float]]) -> list[Check]:
    """Checks of one calibrated light from its report row (``lights.REPORT_COLUMNS``)."""
    subject = row["path"]

    def number(key: str) -> float | None:
        try:
            return float(row[key])
        except (KeyError, TypeError, ValueError):
            return None

    sky = number("sky")
    rows = [
        checked(
            subject,
            "sky_level",
            sky,
            limits["sky_level"],
            f"median {sky:.4g} ADU" if sky is not None else "no sky level",
        )
    ]
    rows.append(
        checked(
            subject,
            "noise_vs_uncert",
            number("noise_ratio"),
            limits["noise_ratio"],
            "pixel-to-pixel noise / median UNCERT (1 when UNCERT is right)",
        )
    )
    rows.append(checked(subject, "masked", number("masked"), limits["masked"], "fraction of pixels with a MASK bit"))
    rows.append(checked(subject, "saturated", number("saturated"), limits["saturated"], "fraction of pixels saturated"))
    rows.append(
        checked(
            subject,
            "gradient",
            number("gradient"),
            limits["gradient"],
            "plane fitted to the sky across the frame, range / sky (a flat of another illumination, or the moon)",
        )
    )
    rows.append(
        checked(
            subject,
            "flatness",
            number("flatness"),
            limits["flatness"],
            "16-84 % range of the sky's cells about that plane / sky (vignetting, dust or "
            "fringes the flat did not remove)",
        )
    )
    after, before = number("fringe_after"), number("fringe_before")
    if after is not None:  # a light of a fringing band whose fringe frame was subtracted
        rows.append(
            checked(
                subject,
                "fringe_residual",
                after,
                limits["fringe_residual"],
                f"fringes / sky after their removal ({before:.4g} before; smoothed rms, fringe.smoothing)",
            )
        )
    flags = row.get("flags") or ""
    rows.append(
        Check(
            subject,
            "calibration_flags",
            flags or "OK",
            "OK",
            "warn" if flags else "pass",
            f"missing or unknown: {flags}" if flags else "every step applied",
        )
    )
    return rows


def qc_csv(checks: Iterable[Check]) -> str:
    """qc.csv text: fails first, then warns, then passes; each in subject, check order."""
    order = {verdict: i for i, verdict in enumerate(("fail", "warn", "pass"))}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=QC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for check in sorted(checks, key=lambda c: (order[c.verdict], c.subject, c.check)):
        writer.writerow(check.row())
    return out.getvalue()


def limits_for(config: Mapping[str, Any], camera: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """The QC limits of a camera: the night's ``qc.limits``, with the camera's ``qc``
    overrides (check by check)."""
    limits = {k: dict(v) for k, v in config["qc"]["limits"].items()}
    for key, value in ((camera or {}).get("qc") or {}).items():
        limits[key] = {**limits.get(key, {}), **value}
    return limits


class QualityStop(RuntimeError):
    """A check failed and ``qc.on_fail`` is 'stop': the work it invalidates is not done."""


def stop_if_failed(checks: Iterable[Check], what: str) -> None:
    """Raise QualityStop naming every failed check (``qc.on_fail: stop``)."""
    failed = [c for c in checks if c.verdict == "fail"]
    if failed:
        raise QualityStop(
            f"{what} not done: quality checks failed (qc.on_fail is 'stop'): "
            + "; ".join(f"{c.subject} {c.check}: {c.note}" for c in failed)
        )


def night_checks(
    plan: Mapping[str, Any],
    config: Mapping[str, Any],
    noise_records: Mapping[str, Mapping[str, Any]],
    master_reports: Mapping[str, Mapping[str, Any]],
    light_rows: Iterable[Mapping[str, Any]],
    failures: Mapping[str, str],
    times: Mapping[str, float],
    library_darks: Iterable[Mapping[str, Any]] = (),
) -> list[Check]:
    """Every check of a night. ``times``: raw path -> seconds (inventory ``time_s``), to put
    the overscan levels of the setup's frames (noise frames, masters' inputs, lights) in
    time order; ``library_darks``: earlier dark masters (``camera``, ``temperature_c``,
    ``date``, ``dark_current``, ``master``) the night's dark current is compared with."""
    checks: list[Check] = []
    cameras = plan["cameras"]
    light_rows = list(light_rows)
    groups = plan["light_groups"]
    levels_by_setup = overscan_levels(plan, master_reports, light_rows)
    for name, record in sorted(noise_records.items()):
        camera = cameras.get(record["setup"]["camera"])
        record = dict(record)
        extra = levels_by_setup.get(name, {})
        if extra and record.get("overscan"):
            ordered = sorted(extra, key=lambda rel: (times.get(rel, math.inf), rel))
            record["overscan"] = [
                {
                    **amp,
                    "levels": [
                        extra[rel][amp["amplifier"] - 1] for rel in ordered if len(extra[rel]) >= amp["amplifier"]
                    ],
                }
                for amp in record["overscan"]
            ]
        checks += setup_checks(record, limits_for(config, camera))
    for name, master in sorted(plan["masters"].items()):
        if master["source"] != "tonight" or name not in master_reports:
            continue
        report = dict(master_reports[name])
        if master["type"] == "dark" and report.get("qc"):
            earlier = _earlier_dark(master, library_darks, cameras[master["camera"]])
            if earlier:
                report["qc"] = {**report["qc"], "library_dark_current": earlier}
        checks += master_checks(name, master["type"], report, limits_for(config, cameras[master["camera"]]))
    for row in light_rows:
        if row.get("status") != "calibrated":
            continue
        group = plan["lights"].get(row["path"], {}).get("group")
        camera = cameras.get(groups[group]["camera"]) if group in groups else None
        checks += light_checks(row, limits_for(config, camera))
    checks.append(
        Check(
            "night",
            "failed_jobs",
            len(failures),
            "0",
            "fail" if failures else "pass",
            "; ".join(f"{k}: {v.splitlines()[0][:200]}" for k, v in sorted(failures.items())) or "every job finished",
        )
    )
    return checks


def overscan_levels(
    plan: Mapping[str, Any], master_reports: Mapping[str, Mapping[str, Any]], light_rows: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, list[float]]]:
    """The overscan levels (ADU, one per amplifier) of every frame of the night that has
    them, by setup: {setup (noise name): {raw path: levels}}, from the masters' inputs
    (their reports) and the calibrated lights (their rows)."""
    levels: dict[str, dict[str, list[float]]] = {}
    for name, master in plan["masters"].items():
        found = (master_reports.get(name, {}).get("qc") or {}).get("overscan_levels") or {}
        if master.get("noise"):
            levels.setdefault(master["noise"], {}).update(found)
    groups = plan["light_groups"]
    for row in light_rows:
        group = plan["lights"].get(row["path"], {}).get("group")
        if group in groups and row.get("overscan_levels"):
            levels.setdefault(groups[group]["noise"], {})[row["path"]] = [
                float(v) for v in row["overscan_levels"].split(";")
            ]
    return levels


def _earlier_dark(
    master: Mapping[str, Any], library_darks: Iterable[Mapping[str, Any]], camera: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The latest library dark of the same camera, setup and temperature (within the
    camera's tolerance) made on an earlier night (UT date), with a dark current."""
    tolerance = camera["temperature_tolerance"]
    begin = master.get("date_begin") or ""
    found = [
        d
        for d in library_darks
        if d["camera"] == master["camera"]
        and d.get("dark_current") is not None
        and d["setup"] == {k: master["setup"].get(k) for k in d["setup"]}
        and d["temperature_c"] is not None
        and master.get("temperature_c") is not None
        and abs(d["temperature_c"] - master["temperature_c"]) <= tolerance
        and d["date"]
        and (not begin or d["date"][:10] < begin[:10])
    ]  # earlier nights
    if not found:
        return None
    latest = max(found, key=lambda d: d["date"])
    return {
        "value": latest["dark_current"],
        "master": latest["master"],
        "date": latest["date"][:10],
        "hot_pixels": latest.get("hot_pixels"),
    }


def quality_stop_message(qc_csv: str, config: Mapping[str, Any]) -> str | None:
    """With ``qc.on_fail: stop`` and a failed check in ``qc_csv``: the message the run
    ends with (non-zero); else None."""
    if config["qc"]["on_fail"] != "stop" or not Path(qc_csv).is_file():
        return None
    with open(qc_csv, newline="", encoding="utf-8") as handle:
        failed = [row for row in csv.DictReader(handle) if row["verdict"] == "fail"]
    if not failed:
        return None
    return (
        f"{len(failed)} quality checks failed and qc.on_fail is 'stop' (see qc.csv): "
        + "; ".join(f"{r['subject']} {r['check']}" for r in failed[:10])
        + (" ..." if len(failed) > 10 else "")
    )
