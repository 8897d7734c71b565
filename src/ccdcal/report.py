"""The night's summary: every file found and what became of it.

``summary.csv`` has one row per file of the inventory: lights with the masters applied
(and the dark mode/scale, flags, output or error), calibration frames with the master they
went into (or why they were dropped from it), excluded files with the reason.
``summary.txt`` says the same for a person. A job that failed does not hide the rest: the
summary is made from what the jobs left in output_dir (``NightState``), and says for every
light or frame that is missing which job failed and why.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .camera import LIGHT_MASTERS
from .inventory import FrameRecord
from .output_dir import FAILURES_DIR, GROUP_REPORT, GROUPS_DIR, MASTER_REPORTS_DIR, NOISE_DIR, QC_CSV
from .plan import master_inputs, plain_output_name

SUMMARY_COLUMNS = [
    "path",
    "frame_type",
    "camera",
    "status",
    "master",
    "output",
    "bias",
    "dark",
    "dark_mode",
    "dark_scale",
    "flat",
    "fringe",
    "fringe_amplitude",
    "flags",
    "detail",
]


@dataclass
class NightState:
    """What the night's jobs left in output_dir: every light group's report rows (by raw
    path), every master's report (by name), every failed job's error (by 'masters/<name>'
    or 'lights/<group>')."""

    light_rows: dict[str, dict[str, str]] = field(default_factory=dict)
    master_reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    noise_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    quality: list[dict[str, str]] = field(default_factory=list)  # qc.csv rows, when written
    failures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, output_dir: str | Path, plan: Mapping[str, Any]) -> NightState:
        out = Path(output_dir)
        state = cls()
        for group in sorted(plan["light_groups"]):
            report = out / GROUPS_DIR / group / GROUP_REPORT
            if report.is_file():
                with open(report, newline="", encoding="utf-8") as handle:
                    state.light_rows.update((row["path"], row) for row in csv.DictReader(handle))
        for name in sorted(plan["masters"]):
            path = out / MASTER_REPORTS_DIR / f"{name}.json"
            if path.is_file():
                state.master_reports[name] = json.loads(path.read_text(encoding="utf-8"))
        if (out / QC_CSV).is_file():
            with open(out / QC_CSV, newline="", encoding="utf-8") as handle:
                state.quality = list(csv.DictReader(handle))
        for name in sorted(plan.get("noise", {})):
            path = out / NOISE_DIR / f"{name}.json"
            if path.is_file():
                state.noise_records[name] = json.loads(path.read_text(encoding="utf-8"))
        for kind, names in (
            ("masters", plan["masters"]),
            ("lights", plan["light_groups"]),
            ("noise", plan.get("noise", {})),
        ):
            for name in sorted(names):
                record = out / FAILURES_DIR / kind / f"{name}.txt"
                if record.is_file():
                    state.failures[f"{kind}/{name}"] = record.read_text(encoding="utf-8").strip()
        return state

    def master_problem(self, name: str, plan: Mapping[str, Any]) -> str | None:
        """Why master ``name`` of tonight is not there (None when it is, or is the library's)."""
        if plan["masters"].get(name, {}).get("source") != "tonight" or name in self.master_reports:
            return None
        error = self.failures.get(f"masters/{name}")
        if error:
            return f"master {name} failed: {error} (log: logs/masters/{name}.log)"
        for needed in master_inputs(plan, name)["masters"]:
            problem = self.master_problem(needed, plan)
            if problem:
                return f"master {name} was not made, as it needs {problem}"
        return f"master {name} was not made: its job did not finish (log: logs/masters/{name}.log)"

    def light_problem(self, group_name: str, plan: Mapping[str, Any]) -> str:
        """Why a planned light of this group has no report row."""
        error = self.failures.get(f"lights/{group_name}")
        if error:
            return f"its job failed: {error} (log: logs/lights/{group_name}.log)"
        group = plan["light_groups"].get(group_name, {})
        for step in LIGHT_MASTERS:
            problem = self.master_problem(group.get(step) or "", plan) if group.get(step) else None
            if problem:
                return problem
        return f"its job did not finish (log: logs/lights/{group_name}.log)"


def summarize(records: list[FrameRecord], plan: Mapping[str, Any], state: NightState) -> tuple[str, str]:
    """(summary.csv text, summary.txt text)."""
    member_of = {f["path"]: name for name, m in plan["masters"].items() for f in m["frames"]}
    rows: list[dict[str, Any]] = []
    for record in records:
        row = {k: "" for k in SUMMARY_COLUMNS}
        row.update(path=record.path, frame_type=record.frame_type, camera=record.camera)
        if not record.ok:
            row.update(status="excluded", detail=record.reason)
        elif record.frame_type == "light":
            report = state.light_rows.get(record.path)
            planned = plan["lights"].get(record.path, {})
            if planned.get("skipped"):
                row.update(status="skipped", detail=planned["skipped"], flags=",".join(planned["flags"]))
            elif report is None:
                row.update(
                    status="failed",
                    flags=",".join(planned.get("flags", [])),
                    detail="not calibrated: " + state.light_problem(planned.get("group") or "", plan),
                )
            else:
                row.update(
                    {
                        k: report.get(k, "")
                        for k in ("output", "bias", "dark", "dark_mode", "dark_scale", "flat", "fringe", "flags")
                    }
                )
                row["fringe_amplitude"] = report.get("fringe_amplitude", "")
                row["status"] = report["status"]
                row["detail"] = report.get("error") or report.get("notes", "")
                if row["output"]:
                    row["output"] = "calibrated/" + row["output"]
        else:
            master = member_of.get(record.path, "")
            row.update(master=master, **_calibration_frame_status(record.path, master, plan, state))
        rows.append(row)

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), _text(rows, plan, state)


def _calibration_frame_status(path: str, master: str, plan: Mapping[str, Any], state: NightState) -> dict[str, str]:
    """status and detail of a bias, dark or flat frame: combined into its master, dropped
    from it (with the reason), or not combined because the master was not made."""
    problem = state.master_problem(master, plan)
    if problem:
        return {"status": "failed", "detail": problem}
    dropped = state.master_reports.get(master, {}).get("dropped", {})
    if path in dropped:
        return {"status": "dropped", "detail": f"dropped from {master}: {dropped[path]}"}
    used = plan["masters"].get(master, {}).get("used", False)
    return {"status": "combined", "detail": "" if used else "master not used by any light or flat tonight"}


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


def _master_line(name: str, master: Mapping[str, Any], plan: Mapping[str, Any], state: NightState) -> str:
    note = "" if master["used"] else "  (not used tonight)"
    problem = state.master_problem(name, plan)
    if problem:
        return f"  {name}: FAILED: {problem}"
    if master["source"] == "pixinsight":
        return f"  {name}: from the PixInsight library ({master['file']}), converted{note}"
    if master["source"] != "tonight":
        return f"  {name}: from the library ({master['file']}){note}"
    n = len(master["frames"]) or len(master.get("derived_from", []))
    if master.get("flags"):
        note += f"  [inputs calibrated without: {','.join(master['flags'])}]"
    dropped = state.master_reports.get(name, {}).get("dropped", {})
    if dropped:
        return f"  {name}: {n - len(dropped)} of {n} frames ({len(dropped)} dropped){note}"
    what = "dark masters fitted" if master.get("derived_from") else "frames"
    return f"  {name}: {n} {what}{note}"


def quality_lines(rows: list[dict[str, str]]) -> list[str]:
    """The quality checks' verdicts: every fail, one line each, first; then how many warn."""
    if not rows:
        return []
    failed = [r for r in rows if r["verdict"] == "fail"]
    warned = [r for r in rows if r["verdict"] == "warn"]
    counts = f"{len(warned)} warn, {len(rows) - len(failed) - len(warned)} pass (qc.csv)"
    lines = [f"QUALITY CHECKS: {len(failed)} FAILED, {counts}" if failed else f"Quality checks: none failed, {counts}"]
    lines += [f"  FAIL {r['subject']} {r['check']} = {r['value']} ({r['limit']}): {r['note']}" for r in failed]
    return lines + [""]


def noise_lines(plan: Mapping[str, Any], state: NightState) -> list[str]:
    """Each setup's gain (e-/ADU) and read noise (e-), where they come from, what was
    measured, and the warnings (a header value the measurement contradicts, none known)."""
    lines = []
    for name in sorted(plan.get("noise", {})):
        record = state.noise_records.get(name)
        if record is None:
            why = state.failures.get(f"noise/{name}", "its job did not finish")
            lines.append(f"  {name}: NOT MEASURED: {why} (log: logs/noise/{name}.log)")
            continue
        measured = record["measured"]
        gain = f"gain {record['gain']:.4g} e-/ADU ({record['gain_source']})"
        if "gain" in measured and not record["gain_source"].startswith("measured"):
            gain += f", measured {measured['gain']['value']:.4g} +- {measured['gain']['error']:.2g}"
        rn = f"read noise {record['read_noise_e']:.4g} e- ({record['read_noise_source']})"
        m_rn = measured.get("read_noise_adu")
        if m_rn and not record["read_noise_source"].startswith("measured"):
            rn += f", measured {m_rn['value'] * record['gain']:.4g} +- {m_rn['error'] * record['gain']:.2g}"
        flags = f"  [{','.join(record['flags'])}]" if record["flags"] else ""
        lines += [f"  {name}: {gain}; {rn}{flags}"]
        lines += [f"    warning: {w}" for w in record["warnings"]]
        lines += [f"    not used: {p}" for p in record["problems"]]
    return lines or ["  (no setup)"]


def _text(rows: list[dict[str, Any]], plan: Mapping[str, Any], state: NightState) -> str:
    status = Counter(r["status"] for r in rows)
    lines = [
        "ccdcal night summary",
        "====================",
        f"{len(rows)} files: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())),
        "",
    ]
    if state.failures or any(state.master_problem(n, plan) for n in plan["masters"]):
        lines += ["SOME JOBS FAILED: the rest of the night is complete; see below and logs/.", ""]
    lines += quality_lines(state.quality)
    lines.append(f"Masters ({len(plan['masters'])}):")
    for name, master in sorted(plan["masters"].items()):
        lines.append(_master_line(name, master, plan, state))
    lines += ["", "Lights:"]
    for row in rows:
        if row["frame_type"] != "light" or row["status"] == "excluded":
            continue
        dark = row["dark"] or "-"
        if row["dark"]:
            dark += f" ({row['dark_mode']}, x{float(row['dark_scale']):.4g})"
        detail = f"  [{row['flags']}]" if row["flags"] else ""
        if row["output"] and plain_output_name(row["output"]) != "calibrated/" + plain_output_name(row["path"]):
            detail += f"  written as {row['output']}"
        if row["status"] != "calibrated":
            detail += f"  {row['status'].upper()}: {row['detail']}"
        lines.append(f"  {row['path']}: bias {row['bias'] or '-'}, dark {dark}, flat {row['flat'] or '-'}{detail}")
    lines += ["", "Gain and read noise (per setup; UNCERT is computed with these):"]
    lines += noise_lines(plan, state)
    lines += ["", "Binnings (frames of another binning are never combined or applied):"]
    lines += binning_notes(rows, plan)
    dropped = [r for r in rows if r["status"] in ("dropped", "failed") and r["frame_type"] != "light"]
    if dropped:
        lines += ["", f"Calibration frames not combined ({len(dropped)}):"]
        lines += [f"  {r['path']}: {r['detail']}" for r in dropped]
    excluded = [r for r in rows if r["status"] == "excluded"]
    lines += ["", f"Excluded ({len(excluded)}):"]
    lines += [f"  {r['path']}: {r['detail']}" for r in excluded]
    return "\n".join(lines) + "\n"
