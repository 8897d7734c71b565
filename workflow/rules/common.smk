import dataclasses
import json
import os
import threading
from functools import lru_cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.io import WILDCARD_REGEX
from snakemake.logging import logger
from snakemake.utils import min_version

from ccdcal.camera import LIGHT_MASTERS
from ccdcal.config import ConfigError, unpaired_raw_dir_message, validated
from ccdcal.inventory import list_raw_files, no_fits_message, parse_shape
from ccdcal.joblog import run_logged
from ccdcal.library import library_path
from ccdcal.output_dir import (
    GROUPS_DIR,
    LIGHT_CACHE_DIR,
    MASTER_PREVIEWS_DIR,
    MASTER_REPORTS_DIR,
    NOISE_DIR,
    QC_CSV,
    OutputDirError,
    check_locations,
    claim,
    find_incomplete,
    remove_incomplete,
    remove_stale_snakemake_locks,
)
from ccdcal.night_noise import plan_frames
from ccdcal.plan import master_inputs
from ccdcal.provenance import plan_settings_digest, settings_for
from ccdcal.qc import limits_for, quality_stop_message
from ccdcal.resources import (
    calibrations_needed,
    job_runtime_min,
    light_group_memory_mb,
    master_memory_mb,
)

min_version("9.0")


# A raw_dir given on the command line needs its output_dir there too (config/config.yaml's
# is the bundled test night's).
_unpaired = unpaired_raw_dir_message(workflow.config_settings.overwrite_config)
if _unpaired:
    raise WorkflowError(_unpaired)

# The schema's defaults filled in, or a few lines saying which key is wrong, its value and
# what is allowed (ccdcal.config.error_message), before any work.
try:
    config.update(validated(config))
except ConfigError as exc:
    raise WorkflowError(str(exc))

RAW_DIR = Path(config["raw_dir"])
OUT_DIR = Path(config["output_dir"])
MASTERS = OUT_DIR / "masters"
IMPORTED = MASTERS / "imported"
MASTER_REPORTS = OUT_DIR / MASTER_REPORTS_DIR
LIGHT_GROUPS = OUT_DIR / GROUPS_DIR
NOISE = OUT_DIR / NOISE_DIR
PREVIEWS = OUT_DIR / MASTER_PREVIEWS_DIR
REPORT_PAGES = OUT_DIR / "work" / "report"
LOGS = OUT_DIR / "logs"

if WILDCARD_REGEX.search(str(OUT_DIR)):
    raise WorkflowError(
        f"output_dir {OUT_DIR} holds a {{name}} in braces, which Snakemake reads as a "
        "wildcard: give an output_dir without one"
    )
try:
    check_locations(RAW_DIR, OUT_DIR)
except OutputDirError as exc:
    raise WorkflowError(str(exc))


wildcard_constraints:
    master=r"[A-Za-z0-9][A-Za-z0-9._+\-]*",
    group=r"[A-Za-z0-9][A-Za-z0-9._+\-]*",
    setup=r"[A-Za-z0-9][A-Za-z0-9._+\-]*",


def prepare_output_dir():
    """Once per run, before the DAG is built (the first input function): hold output_dir
    for this run (a second run on it is refused, naming this one), drop Snakemake locks
    left by a killed run on it, and remove incomplete outputs so they are redone
    (ccdcal.output_dir). A dry run only says what a real run would redo; the jobs that
    Snakemake starts on cluster nodes do nothing here."""
    if prepare_output_dir.done or workflow.remote_exec or workflow.subprocess_exec:
        return
    prepare_output_dir.done = True
    run_bookkeeping_in_threads()
    if workflow.dryrun:
        for path, why in find_incomplete(OUT_DIR):
            logger.warning(
                f"ccdcal: a real run redoes {path.relative_to(OUT_DIR)} ({why})"
            )
        return
    try:
        # False: output_dir cannot be locked here (claim has warned); Snakemake's own
        # lock files are then all that guards it, and are left alone
        locked = claim(OUT_DIR, "snakemake")
    except OutputDirError as exc:
        raise WorkflowError(str(exc))
    prepare_output_dir.claimed = True
    stale = (
        remove_stale_snakemake_locks(Path(".snakemake") / "locks", OUT_DIR)
        if locked
        else []
    )
    for lock in stale:
        logger.warning(f"ccdcal: removed {lock}, left by a killed run on {OUT_DIR}")
    for what in remove_incomplete(OUT_DIR):
        logger.warning(f"ccdcal: redoing {what}")


prepare_output_dir.done = False


def run_bookkeeping_in_threads():
    """The night's bookkeeping (inventory, publishing, summary) is `run:` blocks that call
    one ccdcal function on small files, meant to run in Snakemake's own process: not an
    interpreter started and numpy, astropy and matplotlib imported for each (0.3-0.5 s a
    job). Snakemake runs `run:` jobs in its threads under a cluster executor and with
    --force-use-threads; locally it would start a second Snakemake for each, which parses
    the workflow again (1-2 s). Threads are asked for here, before the jobs' executor is
    made, whatever the command line or profile; should a Snakemake refuse, the jobs still
    run, in those processes."""
    try:
        workflow.execution_settings.use_threads = True
    except (AttributeError, TypeError, dataclasses.FrozenInstanceError):
        logger.warning(
            "ccdcal: the bookkeeping jobs run in processes of their own (slower)"
        )


prepare_output_dir.claimed = False


def is_trackable(path):
    """Whether Snakemake can take this raw file as an input: readable, and no {name} in
    braces in its path (Snakemake reads one as a wildcard and has no escape for it). Such
    files are still calibrated; their size and time are params instead, so a change to
    one still redoes what it affects."""
    return os.access(path, os.R_OK) and not WILDCARD_REGEX.search(str(path))


def untracked_state(paths):
    """Size and modification time (or 'unreadable') of raw files Snakemake cannot track."""
    state = {}
    for rel in paths:
        path = RAW_DIR / rel
        if not is_trackable(path):
            try:
                info = path.stat()
                state[rel] = [info.st_size, info.st_mtime_ns, os.access(path, os.R_OK)]
            except OSError as exc:
                state[rel] = f"unreadable: {exc.strerror}"
    return state


@lru_cache(maxsize=1)
def raw_listing():
    """Every file under raw_dir (output_dir excluded), relative POSIX paths, and the
    folders that could not be read."""
    if not RAW_DIR.is_dir():
        raise WorkflowError(f"raw_dir {RAW_DIR} is not a folder")
    unreadable = []
    files = list_raw_files(RAW_DIR, exclude=[OUT_DIR], unreadable=unreadable)
    return files, unreadable


# A raw_dir without a FITS file stops the run here, saying what it holds: a night of "0
# files" is no success. Not for --lint, which only reads the workflow (Snakemake turns
# check_envvars off for it; the style test lints with an empty raw_dir).
if workflow.check_envvars:
    _no_fits = no_fits_message(RAW_DIR, *raw_listing())
    if _no_fits:
        raise WorkflowError(_no_fits)


def get_raw_files(wildcards=None):
    """Every file under raw_dir (output_dir excluded), relative POSIX paths. (Params that
    hold paths are functions: Snakemake would read a {name} in a string as a wildcard.)
    """
    return raw_listing()[0]


def get_tracked_raw_files(wildcards=None):
    return [str(RAW_DIR / p) for p in get_raw_files() if is_trackable(RAW_DIR / p)]


def get_unreadable_folders(wildcards=None):
    return raw_listing()[1]


def get_untracked_raw_state(wildcards=None):
    return {
        **untracked_state(get_raw_files()),
        **{f"{d}/": "unreadable folder" for d in get_unreadable_folders()},
    }


def get_plan_settings(wildcards=None):
    return plan_settings_digest(config)


@lru_cache(maxsize=4)
def _load_plan(path, mtime):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def get_plan():
    """The calibration plan written by the inventory checkpoint."""
    prepare_output_dir()
    path = checkpoints.inventory.get().output.plan
    return _load_plan(path, Path(path).stat().st_mtime_ns)


def master_file(name):
    """Tonight's masters are in output_dir/masters, the PixInsight masters converted in
    output_dir/masters/imported; the library's are used where they are."""
    master = get_plan()["masters"][name]
    if master["source"] == "library":
        return master["file"]
    if master["source"] == "pixinsight":
        return str(IMPORTED / f"{name}.fits")
    return str(MASTERS / f"{name}.fits")


def tonight_masters(names):
    """The masters among ``names`` made in output_dir (tonight's, and the PixInsight
    masters converted there), as files: Snakemake's inputs."""
    plan = get_plan()
    return [master_file(m) for m in names if plan["masters"][m]["source"] != "library"]


def library_state(paths):
    """Library files a job reads, with their size and time. They are params, not inputs:
    the rule that files masters into the library matches every library path, so Snakemake
    would take a library file as something to remake from a master of tonight of the same
    name. A library file changed (repaired, replaced) still redoes the job."""
    state = {}
    for path in sorted(paths):
        try:
            info = Path(path).stat()
            state[path] = [info.st_size, info.st_mtime_ns]
        except OSError as exc:
            state[path] = f"missing: {exc.strerror}"
    return state


def library_masters(names):
    plan = get_plan()
    return library_state(
        master_file(m) for m in names if plan["masters"][m]["source"] == "library"
    )


def _reuse_library(master):
    """Copy an identical library master, unless this night already has the master and
    made it itself: the choice that made the master there is kept, so a rerun does not
    see other inputs and redo it and everything downstream for nothing (the master's
    report says whether it was copied, and from where)."""
    if not master.get("library_file"):
        return False
    if not (MASTERS / f"{master['name']}.fits").exists():
        return True
    record = MASTER_REPORTS / f"{master['name']}.json"
    try:
        copied_from = json.loads(record.read_text(encoding="utf-8")).get("copied_from")
    except (OSError, ValueError):
        return False
    return copied_from == master["library_file"]


def _master_needs(wildcards):
    """Raw frames and masters a master is made from (none when it is copied from the
    identical library master)."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    if _reuse_library(master):
        return {"frames": [], "masters": []}
    return master_inputs(
        {
            **plan,
            "masters": {
                **plan["masters"],
                master["name"]: {**master, "library_file": None},
            },
        },
        wildcards.master,
    )


def noise_record(name):
    """The file of a setup's gain and read noise (rule measure_noise)."""
    return str(NOISE / f"{name}.json")


def get_master_inputs(wildcards):
    """Raw frames of a master, tonight's masters they are calibrated with, and the noise
    record of its setup (none when it is copied from the library or fitted from darks).
    """
    needs = _master_needs(wildcards)
    master = get_plan()["masters"][wildcards.master]
    return {
        "frames": [
            str(RAW_DIR / p) for p in needs["frames"] if is_trackable(RAW_DIR / p)
        ],
        "masters": tonight_masters(needs["masters"]),
        "noise": [noise_record(master["noise"])] if needs["frames"] else [],
    }


def get_master_library_files(wildcards):
    """The library masters a master is calibrated with, or the identical library master
    it is copied from (see library_state)."""
    master = get_plan()["masters"][wildcards.master]
    if _reuse_library(master):
        return library_state([master["library_file"]])
    return library_masters(_master_needs(wildcards)["masters"])


#: Plan fields that do not change how a master is made (kept out of params, so that they
#: do not trigger a rebuild).
VOLATILE = ("used", "library_file")


def get_master_spec(wildcards):
    master = get_plan()["masters"][wildcards.master]
    spec = {k: v for k, v in master.items() if k not in VOLATILE}
    if _reuse_library(master):
        spec["library_file"] = master["library_file"]
    return json.dumps(spec, sort_keys=True)


def get_import_inputs(wildcards):
    """The bias master a PixInsight dark's dark current is measured with, when made in
    output_dir, and the noise record of its setup, when tonight has one."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    return {
        "masters": tonight_masters(master_inputs(plan, wildcards.master)["masters"]),
        "noise": [noise_record(master["noise"])] if master.get("noise") else [],
    }


def get_import_settings(wildcards):
    """How PixInsight masters are converted (the configuration's pixinsight_import)."""
    return json.dumps(config["pixinsight_import"], sort_keys=True)


def get_import_source_state(wildcards):
    """The PixInsight master file, with its size and time (see library_state)."""
    return library_state([get_plan()["masters"][wildcards.master]["file"]])


def get_import_mem_mb(wildcards, attempt):
    """The import holds about six planes of the master (float32) and its bias."""
    ny, nx = _shape(get_plan()["masters"][wildcards.master]["setup"])
    return (500 + 8 * 4 * ny * nx // 2**20) * attempt


def get_master_camera(wildcards):
    """The camera settings that make this master (ccdcal.provenance.settings_for)."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    settings = settings_for(plan["cameras"][master["camera"]], master["type"])
    return json.dumps(settings, sort_keys=True)


def _shape(setup):
    return parse_shape(setup["shape"])


def get_master_mem_mb(wildcards, attempt):
    """Peak memory of the master job (ccdcal.resources.master_memory_mb), times the attempt."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    n_masters = len(master_inputs(plan, wildcards.master)["masters"])
    mem = master_memory_mb(
        master["type"],
        len(master["frames"]),
        _shape(master["setup"]),
        n_masters,
        config["threads"],
        config["memory_limit_mb"],
    )
    return mem * attempt


def get_master_runtime(wildcards, attempt):
    master = get_plan()["masters"][wildcards.master]
    return job_runtime_min(len(master["frames"]), _shape(master["setup"])) * attempt


def _light_group_master_names(group):
    """The masters a group's lights are calibrated with (the group's, by its definition)."""
    return [
        m
        for m in (group["bias"], group["dark"], group["flat"], group.get("fringe"))
        if m
    ]


def get_light_group_inputs(wildcards):
    """Raw lights of a group and tonight's masters they are calibrated with."""
    group = get_plan()["light_groups"][wildcards.group]
    return {
        "lights": [
            str(RAW_DIR / light["path"])
            for light in group["lights"]
            if is_trackable(RAW_DIR / light["path"])
        ],
        "masters": tonight_masters(_light_group_master_names(group)),
        "noise": noise_record(group["noise"]),
    }


def get_light_group_library_files(wildcards):
    """The library masters a group's lights are calibrated with (see library_state)."""
    group = get_plan()["light_groups"][wildcards.group]
    return library_masters(_light_group_master_names(group))


def get_light_group_spec(wildcards):
    return json.dumps(get_plan()["light_groups"][wildcards.group], sort_keys=True)


def get_light_group_untracked(wildcards):
    group = get_plan()["light_groups"][wildcards.group]
    return untracked_state(light["path"] for light in group["lights"])


def get_light_group_camera(wildcards):
    """The camera settings that make a calibrated light (ccdcal.provenance.settings_for)."""
    plan = get_plan()
    camera = plan["cameras"][plan["light_groups"][wildcards.group]["camera"]]
    return json.dumps(settings_for(camera, "light"), sort_keys=True)


def _light_group_shape(group):
    """The largest trimmed shape among a group's lights."""
    return max(
        (parse_shape(light["shape"]) for light in group["lights"]),
        key=lambda shape: shape[0] * shape[1],
    )


def get_light_group_mem_mb(wildcards, attempt):
    """Peak memory of the light-group job (ccdcal.resources.light_group_memory_mb), times the attempt."""
    group = get_plan()["light_groups"][wildcards.group]
    mem = light_group_memory_mb(
        _light_group_shape(group),
        len(_light_group_master_names(group)),
        config["threads"],
        calibrations_needed(group),
    )
    return mem * attempt


def get_light_group_runtime(wildcards, attempt):
    group = get_plan()["light_groups"][wildcards.group]
    n_masters = len(_light_group_master_names(group))
    return (
        job_runtime_min(len(group["lights"]) + n_masters, _light_group_shape(group))
        * attempt
    )


def get_noise_inputs(wildcards):
    """The raw frames a setup's noise is measured on."""
    plan = get_plan()["noise"][wildcards.setup]
    return [str(RAW_DIR / p) for p in plan_frames(plan) if is_trackable(RAW_DIR / p)]


def get_noise_plan(wildcards):
    return json.dumps(get_plan()["noise"][wildcards.setup], sort_keys=True)


def get_noise_camera(wildcards):
    """The camera settings that measure a setup's noise (ccdcal.provenance.settings_for)."""
    plan = get_plan()
    camera = plan["cameras"][plan["noise"][wildcards.setup]["setup"]["camera"]]
    return json.dumps(settings_for(camera, "noise"), sort_keys=True)


def get_noise_untracked(wildcards):
    return untracked_state(plan_frames(get_plan()["noise"][wildcards.setup]))


def get_noise_library_files(wildcards):
    """The library masters whose gain or read noise a setup may take (library_state)."""
    return library_state(get_plan()["noise"][wildcards.setup]["library"])


def get_noise_mem_mb(wildcards, attempt):
    """The frames a noise job holds: every one it measures, float32, and the job overhead."""
    plan = get_plan()["noise"][wildcards.setup]
    ny, nx = _shape(plan["setup"])
    return (500 + len(plan_frames(plan)) * ny * nx * 8 // 2**20) * attempt


def get_noise_records(wildcards=None):
    return [noise_record(name) for name in sorted(get_plan()["noise"])]


def get_quality_stop(wildcards=None):
    """The QC limits of the job's camera when qc.on_fail is 'stop' (the job then refuses
    to run when its setup's or its masters' checks fail), else ''."""
    if config["qc"]["on_fail"] != "stop":
        return ""
    plan = get_plan()
    if "master" in wildcards.keys():
        camera = plan["masters"][wildcards.master]["camera"]
    else:
        camera = plan["light_groups"][wildcards.group]["camera"]
    return json.dumps(limits_for(config, plan["cameras"][camera]), sort_keys=True)


def get_light_group_dirs(wildcards=None):
    return [str(LIGHT_GROUPS / g) for g in sorted(get_plan()["light_groups"])]


def get_all_masters(wildcards=None):
    """Tonight's masters (the library's are only read)."""
    plan = get_plan()
    return [
        master_file(m)
        for m in sorted(plan["masters"])
        if plan["masters"][m]["source"] == "tonight"
    ]


def get_master_reports(wildcards=None):
    """The reports of tonight's masters (what went into each)."""
    plan = get_plan()
    return [
        str(MASTER_REPORTS / f"{m}.json")
        for m in sorted(plan["masters"])
        if plan["masters"][m]["source"] == "tonight"
    ]


def get_library_filings(wildcards=None):
    """Where tonight's masters are filed in the library (none without library_dir)."""
    if not config["library_dir"]:
        return []
    return [
        str(library_path(config["library_dir"], m))
        for m in get_plan()["masters"].values()
        if m["source"] == "tonight" and m["identity"] and not m.get("library_file")
    ]


def get_final_outputs(wildcards):
    """Every output of the night, each named (a job whose outputs are only partly there,
    after a kill, is then redone)."""
    prepare_output_dir()
    return [
        *(
            str(OUT_DIR / name)
            for name in ("inventory.csv", "plan.json", "matches.csv")
        ),
        *(
            str(OUT_DIR / name)
            for name in ("summary.csv", "summary.txt", "calibrated", QC_CSV)
        ),
        *(
            str(REPORT_PAGES / name)
            for name in (
                "summary.html",
                "qc.html",
                "masters",
                "histograms",
                "plots",
                "lights",
            )
        ),
        *get_all_masters(),
        *get_master_reports(),
        *get_noise_records(),
        *get_library_filings(),
    ]


def release_rate_limit_timers():
    """Let the run end when its work is done. At each scheduling pass Snakemake's job
    rate limiter (--max-jobs-per-timespan, default 100/1s) starts a threading.Timer of
    the timespan that only wakes the scheduler, and not as a daemon: Python waits for
    the last one at exit, so every run that ran a job ended up to a second after its
    work. The scheduler has finished when onsuccess or onerror runs; its timers are
    cancelled. ("100/10ms" is no way out: Snakemake 9 reads it as 10 minutes.)"""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and "_schedule_reevalutation" in getattr(
            thread.function, "__qualname__", ""
        ):
            thread.cancel()


def print_summary():
    summary = OUT_DIR / "summary.txt"
    if summary.exists():
        print(summary.read_text(encoding="utf-8"))


def stop_on_failed_checks():
    """With qc.on_fail: stop, end the run non-zero when a quality check failed (qc.csv,
    the summary and every output stay)."""
    message = quality_stop_message(str(OUT_DIR / QC_CSV), config)
    if message:
        raise SystemExit(message)


def publish_after_failure():
    """Jobs failed: publish what the light groups that finished made, and write the
    summary saying what failed and why (ccdcal.jobs.summary.after_failure)."""
    if not prepare_output_dir.claimed:
        return
    from ccdcal.jobs.summary import after_failure

    try:
        text = after_failure(str(OUT_DIR), config)
    except Exception as exc:  # the night's error is already reported; say this one too
        logger.error(f"ccdcal: could not write the summary after the failure: {exc}")
        return
    if text:
        print(text)
