"""Correctness on the simulated camera nights (ccdcal.simulate presets): each night is
written, calibrated by the workflow as a user runs it, and compared with its truth.

    .venv/bin/python benchmarks/truth_nights.py [--workdir DIR]

Prints one row per night: the true gain, what the headers say, the gain measured from
the frames (photon transfer) and the gain used with its source; the same for the read
noise; and over the night's lights the range of the robust scatter of
(calibrated - truth) / UNCERT ("z") and of (calibrated - truth) over the median UNCERT
("ratio"): 1.00 when UNCERT is the actual noise. tests/test_camera_nights.py asserts the
same figures (0.95-1.05, gain within 3 %).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from astropy.io import fits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from test_camera_nights import PROFILES, light_illumination, night_config  # noqa: E402

from ccdcal import simulate  # noqa: E402


def run_night(preset: str, base: Path) -> dict:
    spec = getattr(simulate, preset)()
    raw, truth, out = base / "raw", base / "truth", base / "out"
    manifest = simulate.write_camera_night(raw, truth, spec)
    config = base / "config.yaml"
    config.write_text(json.dumps(night_config(preset, spec)))
    subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "snakemake"),
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(REPO),
            "--cores",
            "2",
            "--configfile",
            str(config),
            "--config",
            f"raw_dir={raw}",
            f"output_dir={out}",
            "-q",
        ],
        check=True,
        capture_output=True,
    )
    record = json.loads(next((out / "work" / "noise").glob("*.json")).read_text())
    scores = []
    for rel, light in sorted(manifest["lights"].items()):
        path = out / "calibrated" / rel
        scores.append(simulate.score_light(path, truth, light, light_illumination(manifest, fits.getheader(path))))
    cards = manifest["cameras"][spec.camera.key]["header"]["cards"]
    return {"preset": preset, "spec": spec, "record": record, "scores": scores, "cards": cards}


def row(result: dict) -> str:
    spec, record, scores, cards = result["spec"], result["record"], result["scores"], result["cards"]
    measured = record["measured"]
    gain = measured.get("gain")
    m_gain = f"{gain['value']:.3f} ± {gain['error']:.3f}" if gain else "–"
    rn = measured.get("read_noise_adu")
    m_rn = f"{rn['value'] * record['gain']:.2f}" if rn else "–"
    header = ", ".join(f"{k}={v}" for k, v in cards.items() if v is not None) or "none"
    z = [s.z_scatter for s in scores]
    ratio = [s.scatter_ratio for s in scores]
    source = record["gain_source"].split(":")[0]
    return (
        f"| {result['preset'].removeprefix('night_')} | {header} | {spec.camera.gain:g} | {m_gain} | "
        f"{record['gain']:.3f} ({source}) | {spec.camera.read_noise_e:g} | {m_rn} | "
        f"{record['read_noise_e']:.2f} | {min(z):.3f}–{max(z):.3f} | {min(ratio):.3f}–{max(ratio):.3f} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ccdcal-truth-"))
    print(
        "| night | header cards | true gain | measured gain | gain used (source) | true rn e- | "
        "measured rn e- | rn used | z scatter | scatter / median UNCERT |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset in sorted(PROFILES):
        print(row(run_night(preset, workdir / preset)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
