import json
from functools import lru_cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from ccdcal.inventory import list_raw_files
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
    return str(MASTERS / f"{name}.fits")


def get_master_inputs(wildcards):
    """Raw frames of a master and the masters they are calibrated with."""
    needs = master_inputs(get_plan(), wildcards.master)
    return {
        "frames": [escape_braces(RAW_DIR / p) for p in needs["frames"]],
        "masters": [master_file(m) for m in needs["masters"]],
    }


def get_master_spec(wildcards):
    return json.dumps(get_plan()["masters"][wildcards.master], sort_keys=True)


def get_master_camera(wildcards):
    plan = get_plan()
    return json.dumps(
        plan["cameras"][plan["masters"][wildcards.master]["camera"]], sort_keys=True
    )


def _shape(setup):
    return tuple(int(v) for v in setup["shape"].split("x"))


def get_master_mem_mb(wildcards, attempt):
    """Peak memory of the master job (ccdcal.masters.expected_memory_mb), times the attempt."""
    plan = get_plan()
    master = plan["masters"][wildcards.master]
    n_masters = len(master_inputs(plan, wildcards.master)["masters"])
    mem = expected_master_memory_mb(
        len(master["frames"]),
        _shape(master["setup"]),
        n_masters,
        config["threads"],
        config["memory_limit_mb"],
    )
    return mem * attempt


def get_master_runtime(wildcards, attempt):
    master = get_plan()["masters"][wildcards.master]
    return expected_runtime_min(len(master["frames"]), _shape(master["setup"])) * attempt


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
    return [plan["masters"][m] for m in (group["bias"], group["dark"], group["flat"]) if m]


def get_light_group_mem_mb(wildcards, attempt):
    """Peak memory of the light-group job (ccdcal.lights.expected_memory_mb), times the attempt."""
    group = get_plan()["light_groups"][wildcards.group]
    masters = _light_group_masters(group)
    shape = _shape(masters[0]["setup"]) if masters else (4096, 4096)
    mem = expected_light_memory_mb(shape, len(masters), config["threads"])
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
    return [master_file(m) for m in sorted(get_plan()["masters"])]


def get_final_outputs(wildcards):
    return [
        str(OUT_DIR / "summary.csv"),
        str(OUT_DIR / "calibrated"),
        *get_all_masters(),
    ]


def print_summary():
    summary = OUT_DIR / "summary.txt"
    if summary.exists():
        print(summary.read_text(encoding="utf-8"))
