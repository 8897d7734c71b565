"""ccdcal.fringe against known truth: lights with a fringe pattern (rings and waves at 2 %
of the sky, its strength following each light's sky), stars dithered or not, photon and
read noise. The fringe frame built from them is the pattern; removed from each light it
leaves under 10 % of the fringes, and UNCERT (with the fringe frame's noise) is the
scatter of what is left."""

from __future__ import annotations

import numpy as np
import pytest

from ccdcal.fringe import (
    FRINGEFILL,
    FringeSettings,
    build_fringe_frame,
    fringe_statistic,
    measure_sky,
    remove_fringes,
)
from ccdcal.simulate import fringe_pattern, render_stars

SHAPE = (256, 320)
GAIN, READ_NOISE = 1.5, 6.0  # e-/ADU, e-
STRENGTH = 0.02  # largest fringe excursion, fraction of the sky


def night(n: int, dithered: bool, seed: int = 1):
    """n lights: (image ADU, UNCERT ADU, MASK, truth signal ADU, fringe part ADU, sky ADU)."""
    rng = np.random.default_rng(seed)
    pattern = fringe_pattern(SHAPE, seed)
    field = rng.uniform(10, 250, (25, 2)), 10 ** rng.uniform(2.5, 4.5, 25)
    lights = []
    for _ in range(n):
        sky_e = rng.uniform(1500, 3000)
        lines = sky_e * STRENGTH * rng.uniform(0.8, 1.2)  # the line emission varies with the sky
        yy, xx = np.indices(SHAPE)
        gradient = 1 + 0.05 * (xx / SHAPE[1] - 0.5) + 0.03 * (yy / SHAPE[0] - 0.5)
        shift = rng.uniform(-15, 15, 2) if dithered else (0.0, 0.0)
        (positions, peaks) = field
        stars = render_stars(SHAPE, positions[:, 1] * 1.2 + shift[0], positions[:, 0] + shift[1], peaks, 3.0)
        fringes_e = lines * pattern
        signal_e = sky_e * gradient + stars + fringes_e
        electrons = rng.poisson(signal_e) + rng.normal(0, READ_NOISE, SHAPE)
        image = (electrons / GAIN).astype(np.float32)
        uncert = (np.sqrt(signal_e + READ_NOISE**2) / GAIN).astype(np.float32)
        mask = np.zeros(SHAPE, np.uint8)
        lights.append((image, uncert, mask, (sky_e * gradient + stars) / GAIN, fringes_e / GAIN, sky_e / GAIN))
    return pattern, lights


def projection(residual: np.ndarray, pattern: np.ndarray, use: np.ndarray) -> float:
    """Least-squares amplitude of ``pattern`` in ``residual`` (with a plane), over ``use``."""
    yy, xx = np.nonzero(use)
    design = np.stack([pattern[use], np.ones(use.sum()), xx, yy], axis=1)
    return float(np.linalg.lstsq(design, residual[use], rcond=None)[0][0])


@pytest.mark.parametrize("dithered", [True, False], ids=["dithered", "undithered"])
def test_fringes_are_removed_to_under_a_tenth_with_the_noise_uncert_predicts(dithered):
    pattern, everything = night(15, dithered)
    lights = everything[:12]  # the frame's lights; the last three it did not see
    frame = build_fringe_frame(((i, u, m) for i, u, m, *_ in lights), {"min_frames": 5})
    assert frame.cards["NCOMBINE"][0] == 12
    seen = (frame.mask & FRINGEFILL) == 0
    # the fringe frame is the pattern, in units of the sky (its strength averaged)
    scale = projection(frame.data, pattern, seen)
    assert scale == pytest.approx(STRENGTH, rel=0.1)
    noise_ratio = np.std((frame.data - scale * pattern)[seen] / frame.uncert[seen])
    assert 0.9 < noise_ratio < 1.1, noise_ratio  # its UNCERT is its scatter
    if dithered:
        assert (~seen).mean() < 0.03  # the bright stars' cores, seen by no light, and their margin
    else:
        assert (~seen).mean() > 0.05  # every star's pixels and margin, filled
    followed = []
    for image, uncert, mask, truth, fringes, _sky in everything:
        original = projection(fringes, pattern, np.ones(SHAPE, bool))
        background = measure_sky(image, mask, FringeSettings()).background  # sky pixels: no star
        fit = remove_fringes(image, uncert, mask, frame.data, frame.uncert, frame.mask)
        left = projection(image - truth, pattern, background & seen)
        assert abs(left) < 0.1 * abs(original), (left, original)
        followed.append(fit.amplitude / original)  # the amplitude follows each light's fringes
        assert fit.after < 0.5 * fit.before
        z = ((image - truth) / uncert)[background & seen]
        assert 0.95 < np.std(z) < 1.05, np.std(z)
    assert np.std(followed) / np.mean(followed) < 0.03, followed


def test_the_statistic_sees_fringes_and_not_noise():
    pattern, lights = night(1, True)
    image, uncert, mask, truth, fringes, sky = lights[0]
    with_fringes = fringe_statistic(image, mask)
    without = fringe_statistic(image - fringes.astype(np.float32), mask)
    assert with_fringes > 5 * without
    noiseless = fringe_statistic((np.full(SHAPE, sky) + fringes).astype(np.float32), None)
    assert noiseless < with_fringes < 2 * noiseless  # the fringes, and some of the stars and noise


def test_too_few_lights_and_bad_settings_are_refused():
    _, lights = night(2, True)
    with pytest.raises(ValueError, match="a fringe frame needs at least 3"):
        build_fringe_frame((i, u, m) for i, u, m, *_ in lights)
    with pytest.raises(ValueError, match="fringe 'grow'"):
        FringeSettings(grow=-1)
    with pytest.raises(ValueError, match="unknown fringe option"):
        FringeSettings.from_dict({"filters": ["z"], "grow": 1, "smothing": 3})
    assert FringeSettings.from_dict({"filters": ["z"], "grow": 1}).grow == 1
