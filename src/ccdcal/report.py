"""The night's summary: every file found and what became of it.

``summary.csv`` has one row per file of the inventory: lights with the masters applied
(and the dark mode/scale, flags, output or error), calibration frames with the master they
went into, excluded files with the reason. ``summary.txt`` says the same for a person.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from .inventory import FrameRecord

SUMMARY_COLUMNS = ["path", "frame_type", "camera", "status", "master", "output", "bias", "dark",
                   "dark_mode", "dark_scale", "flat", "flags", "detail"]


def _read_reports(paths: Iterable[Path]) -> dict[str, dict[str, str]]:
    rows = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows[row["path"]] = row
    return rows


def summarize(records: list[FrameRecord], plan: Mapping[str, Any], report_files: Iterable[Path]
              ) -> tuple[str, str]:
    """(summary.csv text, summary.txt text)."""
    light_rows = _read_reports(report_files)
    member_of = {f["path"]: name for name, m in plan["masters"].items() for f in m["frames"]}
    rows: list[dict[str, Any]] = []
    for record in records:
        row = {k: "" for k in SUMMARY_COLUMNS}
        row.update(path=record.path, frame_type=record.frame_type, camera=record.camera)
        if not record.ok:
            row.update(status="excluded", detail=record.reason)
        elif record.frame_type == "light":
            report = light_rows.get(record.path)
            planned = plan["lights"].get(record.path, {})
            if planned.get("skipped"):
                row.update(status="skipped", detail=planned["skipped"], flags=",".join(planned["flags"]))
            elif report is None:
                row.update(status="not run", detail="no report for this light")
            else:
                row.update({k: report.get(k, "") for k in ("output", "bias", "dark", "dark_mode",
                                                            "dark_scale", "flat", "flags")})
                row["status"] = report["status"]
                row["detail"] = report.get("error") or report.get("notes", "")
                if row["output"]:
                    row["output"] = "calibrated/" + row["output"]
        else:
            master = member_of.get(record.path, "")
            used = plan["masters"].get(master, {}).get("used", False)
            row.update(status="combined", master=master,
                       detail="" if used else "master not used by any light or flat tonight")
        rows.append(row)

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), _text(rows, plan)


def binning_notes(rows: list[dict[str, Any]], plan: Mapping[str, Any]) -> list[str]:
    """Per camera, the binnings of its lights and of its calibration frames, and a warning
    for lights whose binning has no calibration frames."""
    camera_of = {r["path"]: r["camera"] for r in rows}
    lights: dict[str, set] = {}
    for path, light in plan["lights"].items():
        lights.setdefault(camera_of.get(path, ""), set()).add(light.get("binning") or "")
    calibration: dict[str, set] = {}
    for master in plan["masters"].values():
        calibration.setdefault(master["camera"], set()).add(master["setup"]["binning"])
    notes = []
    for camera in sorted(set(lights) | set(calibration)):
        have = sorted(calibration.get(camera, set()))
        seen = sorted(b for b in lights.get(camera, set()) if b)
        notes.append(f"  {camera}: lights {', '.join(seen) or '-'}; calibration frames {', '.join(have) or '-'}")
        for b in seen:
            if b not in have:
                notes.append(f"    lights at {b} have no calibration frames at {b}: they get none")
    return notes


def _text(rows: list[dict[str, Any]], plan: Mapping[str, Any]) -> str:
    status = Counter(r["status"] for r in rows)
    lines = ["ccdcal night summary", "====================",
             f"{len(rows)} files: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())), ""]
    lines.append(f"Masters ({len(plan['masters'])}):")
    for name, master in sorted(plan["masters"].items()):
        note = "" if master["used"] else "  (not used tonight)"
        lines.append(f"  {name}: {len(master['frames'])} frames{note}")
    lines += ["", "Lights:"]
    for row in rows:
        if row["frame_type"] != "light" or row["status"] == "excluded":
            continue
        dark = row["dark"] or "-"
        if row["dark"]:
            dark += f" ({row['dark_mode']}, x{float(row['dark_scale']):.4g})"
        detail = f"  [{row['flags']}]" if row["flags"] else ""
        if row["status"] != "calibrated":
            detail += f"  {row['status'].upper()}: {row['detail']}"
        lines.append(f"  {row['path']}: bias {row['bias'] or '-'}, dark {dark}, "
                     f"flat {row['flat'] or '-'}{detail}")
    lines += ["", "Binnings (frames of another binning are never combined or applied):"]
    lines += binning_notes(rows, plan)
    excluded = [r for r in rows if r["status"] == "excluded"]
    lines += ["", f"Excluded ({len(excluded)}):"]
    lines += [f"  {r['path']}: {r['detail']}" for r in excluded]
    return "\n".join(lines) + "\n"
