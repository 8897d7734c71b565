import json
from functools import lru_cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from ccdcal.inventory import list_raw_files, parse_shape
from ccdcal.library import library_path
from ccdcal.lights import calibrations_needed
from ccdcal.lights import expected_memory_mb as expected_light_memory_mb
from ccdcal.masters import expected_memory_mb as expected_master_memory_mb
from ccdcal.masters import expected_runtime_min
from ccdcal.plan import master_inputs

min_version("9.0")


validate(config, "../schemas/config.schema.yaml")

RAW_DIR = Path(config["raw_dir"])
OUT_DIR = Path(config["output_dir"])
MASTERS = OUT_DIR / "masters"
LOGS = OUT_DIR / "logs"


wildcard_constraints:
    master=r"[A-Za-z0-9][A-Za-z0-9._+\-]*",
    group=r"[A-Za-z0-9][A-Za-z0-9._+\-]*",


def escape_braces(path):
    """A raw file name used as a literal input path (braces would read as wildcards)."""
    return str(path).replace("{", "{{").replace("}", "}}")


def get_raw_files():
    """Every file under raw_dir (output_dir excluded), relative POSIX paths."""
    if not RAW_DIR.is_dir():
        raise WorkflowError(f"raw_dir {RAW_DIR} is not a folder")
    return list_raw_files(RAW_DIR, exclude=[OUT_DIR])


@lru_cache(maxsize=4)
def _load_plan(path, mtime):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def get_plan():
    """The calibration plan written by the inventory checkpoint."""
    path = checkpoints.inventory.get().output.plan
    return _load_plan(path, Path(path).stat().st_mtime_ns)


def master_file(name):
    """Tonight's masters are in output_dir/masters; the library's are used where they are."""
    master = get_plan()["masters"][name]
    if master["source"] == "library":
        return master["file"]
    return str(MASTERS / f"{name}.fits")


def _reuse_library(master):
    """Link an identical library master, unless this night already built the master (its
    inputs would then change and everything downstream would be redone for nothing)."""
    return (
        bool(master.get("library_file"))
        and not (MASTERS / f"{master['name']}.fits").exists()
    )


def get_master_inputs(wildcards):
    """Raw frames of a master and the masters they are calibrated with, or the identical
    library master it is linked to."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    if _reuse_library(master):
        return {"frames": [], "masters": [], "library": [master["library_file"]]}
    needs = master_inputs(
        {
            **plan,
            "masters": {
                **plan["masters"],
                master["name"]: {**master, "library_file": None},
            },
        },
        wildcards.master,
    )
    return {
        "frames": [escape_braces(RAW_DIR / p) for p in needs["frames"]],
        "masters": [master_file(m) for m in needs["masters"]],
        "library": [],
    }


#: Plan fields that do not change how a master is made (kept out of params, so that they
#: do not trigger a rebuild).
VOLATILE = ("used", "library_file")


def get_master_spec(wildcards):
    master = get_plan()["masters"][wildcards.master]
    spec = {k: v for k, v in master.items() if k not in VOLATILE}
    if _reuse_library(master):
        spec["library_file"] = master["library_file"]
    return json.dumps(spec, sort_keys=True)


def get_master_camera(wildcards):
    plan = get_plan()
    return json.dumps(
        plan["cameras"][plan["masters"][wildcards.master]["camera"]], sort_keys=True
    )


def _shape(setup):
    return parse_shape(setup["shape"])


def get_master_mem_mb(wildcards, attempt):
    """Peak memory of the master job (ccdcal.masters.expected_memory_mb), times the attempt."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    n_masters = len(master_inputs(plan, wildcards.master)["masters"])
    mem = expected_master_memory_mb(
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
    return (
        expected_runtime_min(len(master["frames"]), _shape(master["setup"])) * attempt
    )


def get_light_group_inputs(wildcards):
    """Raw lights of a group and its masters."""
    group = get_plan()["light_groups"][wildcards.group]
    masters = sorted(
        {
            m
            for light in group["lights"]
            for m in (light["bias"], light["dark"], light["flat"])
            if m
        }
    )
    return {
        "lights": [escape_braces(RAW_DIR / light["path"]) for light in group["lights"]],
        "masters": [master_file(m) for m in masters],
    }


def get_light_group_spec(wildcards):
    return json.dumps(get_plan()["light_groups"][wildcards.group], sort_keys=True)


def get_light_group_camera(wildcards):
    plan = get_plan()
    return json.dumps(
        plan["cameras"][plan["light_groups"][wildcards.group]["camera"]], sort_keys=True
    )


def _light_group_masters(group):
    plan = get_plan()
    return [
        plan["masters"][m] for m in (group["bias"], group["dark"], group["flat"]) if m
    ]


def get_light_group_mem_mb(wildcards, attempt):
    """Peak memory of the light-group job (ccdcal.lights.expected_memory_mb), times the attempt."""
    group = get_plan()["light_groups"][wildcards.group]
    masters = _light_group_masters(group)
    shape = _shape(masters[0]["setup"]) if masters else (4096, 4096)
    mem = expected_light_memory_mb(
        shape, len(masters), config["threads"], calibrations_needed(group)
    )
    return mem * attempt


def get_light_group_runtime(wildcards, attempt):
    group = get_plan()["light_groups"][wildcards.group]
    masters = _light_group_masters(group)
    shape = _shape(masters[0]["setup"]) if masters else (4096, 4096)
    return expected_runtime_min(len(group["lights"]) + len(masters), shape) * attempt


def get_light_group_dirs(wildcards=None):
    return [
        str(OUT_DIR / "work" / "lights" / g) for g in sorted(get_plan()["light_groups"])
    ]


def get_all_masters(wildcards=None):
    """Tonight's masters (the library's are only read)."""
    plan = get_plan()
    return [
        master_file(m)
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
    return [
        str(OUT_DIR / "summary.csv"),
        str(OUT_DIR / "matches.csv"),
        str(OUT_DIR / "calibrated"),
        *get_all_masters(),
        *get_library_filings(),
    ]


def print_summary():
    summary = OUT_DIR / "summary.txt"
    if summary.exists():
        print(summary.read_text(encoding="utf-8"))
