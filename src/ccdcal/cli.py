"""The ``ccdcal`` command (also ``python -m ccdcal``).

    ccdcal plan RAW_DIR [--configfile F] [--library DIR] [--json]
    ccdcal watch RAW_DIR OUTPUT_DIR [--configfile F] [--library DIR] [--quiet-seconds S] ...

``plan`` reads the headers of a night's raw frames and prints what the workflow would do,
without writing anything: the inventory (frames per camera and type, every exclusion
with its reason), the masters it would build or take from the library (with their
frames), and which masters each light would get (dark mode, flags, notes). ``--json``
prints the whole plan as ``plan.json`` holds it. The configuration is the workflow's
(a YAML file as ``--configfile`` gives Snakemake), validated against the same schema.
Master identities (for matching library masters byte for byte) need every calibration
frame's checksum and are left out here: a library master is listed as a candidate, not
as identical.

``watch`` calibrates a night as its frames arrive (``ccdcal.watch``): each light with the
best masters of the library (``--library``, else the configuration's library_dir, else
OUTPUT_DIR/library), tonight's once their frames have stopped arriving for
``--quiet-seconds``. One line per frame; Ctrl-C stops it, and it resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, validated
from .inventory import list_raw_files
from .jobs.inventory import plan_night
from .plan import PlanError


def night_plan(raw_dir: str | Path, config: Mapping[str, Any], library_dir: str | None = None) -> tuple[list, dict]:
    """(inventory records, plan) of the night in ``raw_dir`` under ``config`` (a user
    configuration: validated here, its raw_dir replaced): ``jobs.inventory.plan_night`` without its
    caches, so nothing is written."""
    full = validated(
        {
            **config,
            "raw_dir": str(raw_dir),
            "output_dir": config.get("output_dir", "."),
            "library_dir": library_dir or config.get("library_dir"),
        }
    )
    unreadable: list[str] = []
    files = list_raw_files(raw_dir, unreadable=unreadable)
    return plan_night(full, files, unreadable)


def describe(records: list, plan: Mapping[str, Any]) -> str:
    """The inventory and the plan as text for a person."""
    lines = []
    kinds = Counter((r.camera or "(no camera)", r.frame_type or "?") for r in records if r.ok)
    lines.append(f"{len(records)} files, {sum(r.ok for r in records)} usable")
    for (camera, kind), n in sorted(kinds.items()):
        lines.append(f"  {camera}: {n} {kind}")
    excluded = [r for r in records if not r.ok]
    if excluded:
        lines.append(f"excluded ({len(excluded)}):")
        lines += [f"  {r.path}: {r.reason}" for r in excluded]
    lines.append(f"masters ({len(plan['masters'])}):")
    for name, master in sorted(plan["masters"].items()):
        source = f"{master['source']} {master.get('file')}" if master["source"] != "tonight" else "tonight"
        made = (
            f"fitted from {len(master['derived_from'])} darks"
            if master.get("derived_from")
            else f"{len(master.get('frames', []))} frames"
        )
        lines.append(f"  {name}: {master['type']}, {made}, {source}")
    lines.append(f"lights ({len(plan['lights'])}):")
    for rel, light in sorted(plan["lights"].items()):
        dark = light.get("dark")
        if dark and light.get("dark_mode"):
            dark = f"{dark} ({light['dark_mode']}, x{light.get('dark_scale', 1):.4g})"
        got = ", ".join(
            f"{kind} {value}"
            for kind, value in (("bias", light.get("bias")), ("dark", dark), ("flat", light.get("flat")))
            if value
        )
        flags = ",".join(light.get("flags") or []) or "OK"
        lines.append(f"  {rel}: {got or 'no master'}; {flags}")
        lines += [f"    {note}" for note in light.get("notes") or []]
    skipped = plan.get("skipped") or {}
    if skipped:
        lines.append(f"lights not calibrated ({len(skipped)}):")
        lines += [f"  {rel}: {why}" for rel, why in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccdcal", description="Calibration of astronomical CCD/CMOS frames.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="print what the workflow would do with a night, without running it")
    plan.add_argument("raw_dir", type=Path, help="the folder of the night's raw frames")
    plan.add_argument("--configfile", type=Path, help="the workflow's configuration (YAML)")
    plan.add_argument("--library", help="a master library folder (library_dir)")
    plan.add_argument("--json", action="store_true", help="print the plan as plan.json holds it")
    watch = commands.add_parser("watch", help="calibrate a night's frames as they arrive")
    watch.add_argument("raw_dir", type=Path, help="the folder the night's raw frames arrive in")
    watch.add_argument("output_dir", type=Path, help="where calibrated frames, masters and summary.csv go")
    watch.add_argument("--configfile", type=Path, help="the workflow's configuration (YAML)")
    watch.add_argument("--library", help="the master library (default: library_dir, else OUTPUT_DIR/library)")
    watch.add_argument(
        "--quiet-seconds", type=float, default=60.0, help="build masters once no calibration frame came for this long"
    )
    watch.add_argument(
        "--settle-seconds", type=float, default=0.5, help="a file is complete once unchanged for this long (and whole)"
    )
    watch.add_argument("--poll", action="store_true", help="list the folder instead of file system events (NFS)")
    watch.add_argument("--threads", type=int, default=2, help="threads per light (default 2)")
    args = parser.parse_args(argv)
    if not args.raw_dir.is_dir():
        parser.error(f"raw_dir {args.raw_dir} is not a folder")
    config: dict[str, Any] = {}
    if args.configfile:
        config = yaml.safe_load(args.configfile.read_text(encoding="utf-8")) or {}
    if args.command == "watch":
        return watch_night(args, config)
    try:
        records, night = night_plan(args.raw_dir, config, args.library)
    except (ConfigError, PlanError, ValueError) as exc:
        print(f"ccdcal plan: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(night, indent=1, sort_keys=True) if args.json else describe(records, night), end="")
    return 0


def watch_night(args: argparse.Namespace, config: Mapping[str, Any]) -> int:
    """``ccdcal watch``: the configuration validated, the watcher run until Ctrl-C."""
    from .watch import Watcher, WatchSettings

    library = args.library or config.get("library_dir") or str(args.output_dir / "library")
    try:
        full = validated(
            {**config, "raw_dir": str(args.raw_dir), "output_dir": str(args.output_dir), "library_dir": library}
        )
    except ConfigError as exc:
        print(f"ccdcal watch: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = WatchSettings(
        full,
        settle_seconds=args.settle_seconds,
        quiet_seconds=args.quiet_seconds,
        use_events=not args.poll,
        threads=args.threads,
    )
    watcher = Watcher(settings, say=lambda line: print(line, flush=True))
    signal.signal(signal.SIGINT, watcher.stop)
    signal.signal(signal.SIGTERM, watcher.stop)
    watcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
