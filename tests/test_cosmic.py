"""Cosmic rays (ccdcal.cosmic), cosmetic correction (ccdcal.cosmetic) and the cosmic-ray
injection of ccdcal.simulate, on simulated calibrated lights with stars.

A light here is made as a night's would be: sky + stars (FWHM 2-3 px, 10 sigma to near
saturation, a few saturated) through a vignetted flat, Poisson and read noise, cosmic
rays (``simulate.inject_cosmic_rays``: single pixels, 2-4 pixel clusters, tracks, 50-5000
e-), hot pixels, a bias, rounded and clipped to 16 bits, then calibrated by ccdcal's own
engine (``calibrate.Calibration``), which gives its UNCERT and MASK (BADPIX hot pixels,
SATURATED)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from ccdcal import simulate
from ccdcal.calibrate import Calibration, subtrahend
from ccdcal.cosmetic import MEDIAN_EFFICIENCY, CosmeticSettings, correct_cosmetic
from ccdcal.cosmic import MASKED_BITS, CosmicSettings, find_cosmic_rays, noise_variance
from ccdcal.products import (
    BADPIX,
    CORE_MASK_BITS,
    COSMIC,
    MASK_BITS,
    NONFINITE,
    SATURATED,
    WEAKFLAT,
    Product,
    mask_header,
    read_product,
    write_product,
)

GAIN = 1.5  # e-/ADU
BIAS = 1000.0  # ADU
FULL_E = (simulate.SATURATION_ADU - BIAS) * GAIN  # electrons that saturate a pixel


def _product(data, uncert, mask=None) -> Product:
    data = np.asarray(data, dtype=np.float32)
    uncert = np.broadcast_to(np.asarray(uncert, dtype=np.float32), data.shape).copy()
    mask = np.zeros(data.shape, np.uint8) if mask is None else mask
    return Product(Path("synthetic"), data, uncert, mask, fits.Header(), "synthetic")


@dataclass
class Scene:
    image: np.ndarray  # calibrated, ADU
    uncert: np.ndarray
    mask: np.ndarray
    rays: simulate.CosmicRays
    snr: np.ndarray  # cosmic-ray charge / the pixel's noise without it
    x: np.ndarray  # stars: centre (0-based), FWHM (px), peak (e-)
    y: np.ndarray
    fwhm: np.ndarray
    peak: np.ndarray
    read_noise_e: float
    saturation_adu: float  # in the calibrated image


def make_scene(
    seed: int,
    sky_e: float,
    read_noise_e: float,
    size: int = 1024,
    n_stars: int = 300,
    n_rays: int = 600,
    n_saturated: int = 5,
) -> Scene:
    rng = np.random.default_rng(seed)
    shape = (size, size)
    yy, xx = np.indices(shape)
    flat = 1 - 0.12 * ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2
    flat *= 1 + 0.005 * rng.standard_normal(shape)
    bias = BIAS + 3 * rng.standard_normal(shape)
    hot = rng.choice(size * size, size * size // 1000, replace=False)
    bias_mask = np.zeros(shape, np.uint8)
    bias_mask.reshape(-1)[hot] = BADPIX
    noise_e = np.sqrt(sky_e + read_noise_e**2)
    x, y = rng.uniform(8, size - 8, n_stars), rng.uniform(8, size - 8, n_stars)
    peak = np.exp(rng.uniform(np.log(10 * noise_e), np.log(0.9 * FULL_E), n_stars))
    k = n_stars // 10
    peak[:k] = rng.uniform(0.75, 0.92, k) * FULL_E - sky_e  # near saturation
    peak[k : k + n_saturated] = rng.uniform(2, 20, n_saturated) * FULL_E  # saturated
    fwhm = rng.uniform(2.0, 3.0, n_stars)
    signal_e = sky_e + simulate.render_stars(shape, x, y, peak, fwhm)
    charge = np.zeros(shape)
    rays = simulate.inject_cosmic_rays(charge, rng, n_rays)
    electrons = rng.poisson(flat * signal_e) + rng.normal(0, read_noise_e, shape) + charge
    electrons.reshape(-1)[hot] += rng.uniform(200, 3000, hot.size)
    raw = np.clip(np.rint(bias + electrons / GAIN), 0, simulate.SATURATION_ADU)
    calibration = Calibration(
        subtrahend(_product(bias, 0.5, bias_mask), None, None, None), _product(flat, 0.002), GAIN, read_noise_e / GAIN
    )
    image, uncert, mask = calibration.apply(raw.astype(np.float32), raw >= simulate.SATURATION_ADU)
    snr = rays.charge_e / np.sqrt(read_noise_e**2 + flat * signal_e)
    return Scene(image, uncert, mask, rays, snr, x, y, fwhm, peak, read_noise_e, simulate.SATURATION_ADU - BIAS)


def find(scene: Scene, **settings):
    return find_cosmic_rays(
        scene.image,
        scene.uncert,
        scene.mask,
        gain=GAIN,
        read_noise=scene.read_noise_e,
        saturation=scene.saturation_adu,
        settings=settings,
    )


#: (seed, sky e-, read noise e-, cosmic-ray events per 1024^2): a dark narrowband sky, a
#: broadband one, a bright (moonlit) one. Hundreds of events, so that the fractions are
#: measured on ~1000 pixels above 5 sigma (a real 600 s light has tens).
SCENES = {"sky60": (11, 60.0, 5.0, 600), "sky800": (12, 800.0, 8.0, 800), "sky2000": (13, 2000.0, 12.0, 600)}


@pytest.fixture(scope="module", params=sorted(SCENES))
def found(request):
    seed, sky, read_noise, rays = SCENES[request.param]
    scene = make_scene(seed, sky, read_noise, n_rays=rays)
    return scene, find(scene)


# ------------------------------------------------------------------------- detection


def test_flags_the_cosmic_rays_above_5_sigma(found):
    """>= 95 % of the cosmic-ray pixels whose charge is above 5 sigma of the pixel's noise
    (and that are not masked: masked pixels are never flagged) are flagged."""
    scene, result = found
    strong = scene.rays.mask & (scene.snr > 5) & (scene.mask == 0)
    assert strong.sum() > 900
    fraction = np.count_nonzero(result.crmask & strong) / np.count_nonzero(strong)
    assert fraction >= 0.95, f"{fraction:.4f} of {strong.sum()} pixels above 5 sigma flagged"


def test_flags_few_other_pixels(found):
    """< 0.01 % of the pixels without cosmic-ray charge are flagged."""
    scene, result = found
    other = ~scene.rays.mask
    fraction = np.count_nonzero(result.crmask & other) / np.count_nonzero(other)
    assert fraction < 1e-4, f"{fraction:.2e} of the other pixels flagged"


def test_flags_no_star_core(found):
    """No star's core is flagged: its brightest pixel and every pixel within one FWHM of
    its centre, for stars from 10 sigma to saturated; a star with a cosmic ray within
    FWHM + 1.5 px of its centre is left out (the ray may rightly be flagged)."""
    scene, result = found
    size = result.crmask.shape[0]
    checked, flagged = 0, []
    for i, (x, y, fwhm) in enumerate(zip(scene.x, scene.y, scene.fwhm)):
        r = int(np.ceil(fwhm)) + 2
        box = np.s_[max(int(y) - r, 0) : min(int(y) + r + 2, size), max(int(x) - r, 0) : min(int(x) + r + 2, size)]
        yy, xx = np.indices(result.crmask.shape)[(slice(None), *box)]
        distance = np.hypot(xx - x, yy - y)
        if (scene.rays.mask[box] & (distance <= fwhm + 1.5)).any():
            continue
        core = distance <= fwhm
        core[np.unravel_index(np.argmax(np.where(distance <= 1, scene.image[box], -np.inf)), core.shape)] = True
        checked += 1
        if (result.crmask[box] & core).any():
            flagged.append((i, round(float(scene.peak[i])), round(float(fwhm), 2)))
    assert checked >= 0.9 * len(scene.x)
    assert flagged == [], f"star cores flagged (index, peak e-, FWHM): {flagged}"


def test_masked_pixels_are_never_flagged(found):
    scene, result = found
    assert not (result.crmask & ((scene.mask & MASKED_BITS) != 0)).any()
    # the hot pixels (BADPIX, 200-3000 e- above the sky: cosmic rays to L.A.Cosmic) are there
    assert np.count_nonzero(scene.mask & BADPIX) > 900


def test_result_planes(found):
    """The MASK returned is the input's with COSMIC on the flagged pixels; without
    ``replace`` the image and UNCERT are the inputs themselves, untouched."""
    scene, result = found
    assert result.crmask.dtype == bool and result.crmask.shape == scene.image.shape
    assert result.flagged == np.count_nonzero(result.crmask)
    expected = scene.mask.copy()
    expected[result.crmask] |= COSMIC
    np.testing.assert_array_equal(result.mask, expected)
    assert result.mask is not scene.mask and not (scene.mask & COSMIC).any()
    assert result.image is scene.image and result.uncert is scene.uncert
    assert result.replaced == result.unfilled == 0


@pytest.fixture(scope="module")
def small():
    return make_scene(21, 800.0, 8.0, size=384, n_stars=60, n_rays=150)


def test_masked_cosmic_rays_not_flagged(small):
    """Cosmic-ray pixels given a MASK bit (any of masked_bits) are not flagged; the cosmic
    rays away from them still are."""
    clean = find(small)
    hit = np.flatnonzero(clean.crmask)[::4]
    for bit in (BADPIX, WEAKFLAT, NONFINITE):
        mask = small.mask.copy()
        mask.reshape(-1)[hit] |= bit
        result = find_cosmic_rays(small.image, small.uncert, mask, gain=GAIN, read_noise=small.read_noise_e)
        masked = np.zeros(mask.shape, bool)
        masked.reshape(-1)[hit] = True
        assert not (result.crmask & masked).any()
        far = ~ndimage.binary_dilation(masked, np.ones((5, 5)))
        assert np.count_nonzero(result.crmask & far) >= 0.9 * np.count_nonzero(clean.crmask & far)


def test_non_finite_pixels(small):
    """NaN in the image and UNCERT (NONFINITE pixels) are never flagged, and change nothing
    away from them."""
    image, uncert, mask = small.image.copy(), small.uncert.copy(), small.mask.copy()
    bad = (slice(100, 104), slice(200, 260))
    image[bad] = np.nan
    uncert[bad] = np.nan
    mask[bad] |= NONFINITE
    result = find_cosmic_rays(
        image, uncert, mask, gain=GAIN, read_noise=small.read_noise_e, saturation=small.saturation_adu
    )
    assert not result.crmask[bad].any()
    far = ~ndimage.binary_dilation(np.isnan(image), np.ones((15, 15)))
    np.testing.assert_array_equal(result.crmask[far], find(small).crmask[far])


def test_replace_changes_only_the_flagged_pixels(small):
    result = find(small, replace=True)
    flagged = result.crmask
    assert flagged.any() and result.replaced == flagged.sum() and result.unfilled == 0
    assert result.image is not small.image and result.uncert is not small.uncert
    np.testing.assert_array_equal(result.image[~flagged], small.image[~flagged])
    np.testing.assert_array_equal(result.uncert[~flagged], small.uncert[~flagged])
    assert np.array_equal(find(small).crmask, flagged)  # the inputs were not modified
    # each replaced pixel: the median of the 5x5 box's pixels neither flagged nor masked
    usable = ~flagged & ((small.mask & MASKED_BITS) == 0)
    for y, x in np.argwhere(flagged)[::7]:
        box = np.s_[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
        values, sigmas = small.image[box][usable[box]], small.uncert[box][usable[box]]
        assert result.image[y, x] == pytest.approx(np.median(values.astype(np.float64)), rel=1e-6)
        assert result.uncert[y, x] == pytest.approx(
            MEDIAN_EFFICIENCY * np.median(sigmas) / np.sqrt(values.size), rel=1e-5
        )
    # the cosmic rays are gone: what is left is noise around the sky and stars
    rays = small.rays.mask & flagged
    before = small.image[rays] - ndimage.median_filter(small.image, 5)[rays]
    after = result.image[rays] - ndimage.median_filter(small.image, 5)[rays]
    assert np.median(np.abs(after)) < 0.1 * np.median(np.abs(before))


def test_inplace(small):
    image, uncert, mask = small.image.copy(), small.uncert.copy(), small.mask.copy()
    result = find_cosmic_rays(
        image, uncert, mask, gain=GAIN, read_noise=small.read_noise_e, settings={"replace": True}, inplace=True
    )
    assert result.image is image and result.uncert is uncert and result.mask is mask
    copied = find(small, replace=True)
    np.testing.assert_array_equal(image, copied.image)
    np.testing.assert_array_equal(uncert, copied.uncert)
    np.testing.assert_array_equal(mask, copied.mask)


def test_gain_only_scales_saturation(small):
    """With UNCERT as invar every test is a signal-to-noise ratio: the gain changes nothing
    (it only turns ``saturation`` into electrons)."""
    kwargs = dict(read_noise=small.read_noise_e)
    one = find_cosmic_rays(small.image, small.uncert, small.mask, gain=1.0, **kwargs).crmask
    four = find_cosmic_rays(small.image, small.uncert, small.mask, gain=4.0, **kwargs).crmask
    assert np.count_nonzero(one != four) <= 2  # float32 rounding of the electrons


def test_without_uncert(small):
    """uncert=None: astroscrappy's own noise model (gain, read noise), still finds them."""
    result = find_cosmic_rays(
        small.image, None, small.mask, gain=GAIN, read_noise=small.read_noise_e, settings={"replace": True}
    )
    strong = small.rays.mask & (small.snr > 5) & (small.mask == 0)
    assert np.count_nonzero(result.crmask & strong) >= 0.9 * np.count_nonzero(strong)
    assert result.uncert is None and result.replaced == result.flagged


def test_screening_steps_matter(small):
    """Without the significance test, noise peaks are flagged; the growth adds pixels."""
    bare = find(small, zmin=0, star_ratio=0, grow_z=0)
    full = find(small)
    other = ~small.rays.mask
    assert np.count_nonzero(bare.crmask & other) > 5 * max(np.count_nonzero(full.crmask & other), 1)
    assert full.dropped > 0 and full.grown > 0


@pytest.mark.parametrize("fwhm, cx, cy", [(2.0, 20.3, 19.8), (2.0, 20.5, 20.5), (2.5, 20.1, 20.4), (3.0, 20.0, 20.0)])
def test_noise_variance_keeps_a_sharp_stars_variance(fwhm, cx, cy):
    """astroscrappy median-filters invar over 7 pixels: on UNCERT^2 itself that leaves about
    the sky's variance on a sharp star's edge; on ``noise_variance``, at least the star's
    own from one FWHM of its centre outwards. A cosmic ray's own variance (one pixel) is
    gone, the sky's unchanged."""
    from astroscrappy.utils import sepmedfilt7

    y, x = np.indices((41, 41))
    star = 40000.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (fwhm / 2.3548) ** 2))
    variance = (100.0 + star).astype(np.float32)
    variance[5, 5] = 50000.0  # a cosmic ray's shot noise
    plain, protected = sepmedfilt7(variance), sepmedfilt7(noise_variance(np.sqrt(variance)))
    edge = (np.hypot(x - cx, y - cy) >= fwhm) & (np.hypot(x - cx, y - cy) < 4.5)
    assert (plain[edge] < 0.5 * variance[edge]).sum() >= 8  # the problem
    assert (protected[edge] >= 0.999 * variance[edge]).all()
    assert protected[5, 5] == pytest.approx(100.0) and protected[35, 35] == pytest.approx(100.0)
    variance[30, 8] = np.nan  # a NONFINITE pixel: does not spread, gets its neighbours' value
    assert np.isfinite(noise_variance(np.sqrt(variance))).all()


# --------------------------------------------------------------------------- settings


def test_settings_defaults():
    assert CosmicSettings.from_dict(None) == CosmicSettings.from_dict({}) == CosmicSettings()
    s = CosmicSettings.from_dict({"sigclip": np.float32(4), "niter": np.int64(3), "replace": True})
    assert s.sigclip == 4.0 and type(s.sigclip) is float and s.niter == 3 and type(s.niter) is int
    assert s.masked_bits == BADPIX | SATURATED | WEAKFLAT | NONFINITE | COSMIC
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sigclip = 5.0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"sigclip": 0}, "cosmic_rays 'sigclip': must be finite and > 0, got 0"),
        ({"sigclip": "4.5"}, "cosmic_rays 'sigclip': must be a number, got '4.5'"),
        ({"sigclip": True}, "cosmic_rays 'sigclip': must be a number, got True"),
        ({"sigfrac": 1.5}, "cosmic_rays 'sigfrac': must be finite and > 0 and <= 1, got 1.5"),
        ({"objlim": float("nan")}, "'objlim'.*got nan"),
        ({"zmin": -1}, "cosmic_rays 'zmin': must be finite and >= 0, got -1"),
        ({"star_ratio": 2}, "'star_ratio'.*got 2"),
        ({"grow_z": -0.5}, "'grow_z'.*got -0.5"),
        ({"niter": 0}, "cosmic_rays 'niter': must be >= 1 and <= 10, got 0"),
        ({"niter": 2.5}, "cosmic_rays 'niter': must be an integer, got 2.5"),
        ({"sepmed": "yes"}, "cosmic_rays 'sepmed': must be true or false, got 'yes'"),
        ({"cleantype": "mean"}, "cosmic_rays 'cleantype': must be one of meanmask, medmask, median, idw, got 'mean'"),
        ({"fsmode": "psf"}, "cosmic_rays 'fsmode': must be one of median, convolve, got 'psf'"),
        ({"psfmodel": "airy"}, "'psfmodel'.*got 'airy'"),
        ({"psffwhm": 0}, "'psffwhm'.*got 0"),
        ({"psfsize": 6}, "cosmic_rays 'psfsize': must be odd, got 6"),
        ({"psfbeta": 0.5}, "'psfbeta'.*got 0.5"),
        ({"masked_bits": 256}, "cosmic_rays 'masked_bits': must be >= 0 and <= 255, got 256"),
        ({"saturated_grow": -1}, "'saturated_grow'.*got -1"),
        ({"replace": 1}, "cosmic_rays 'replace': must be true or false, got 1"),
        ({"replace_radius": 0}, "'replace_radius'.*got 0"),
        ({"sigma_clip": 4}, "unknown cosmic_rays option.*'sigma_clip'"),
        (["sigclip"], "cosmic_rays spec must be a mapping"),
    ],
)
def test_settings_errors_name_the_key_and_value(values, message):
    with pytest.raises(ValueError, match=message):
        CosmicSettings.from_dict(values)


def test_call_errors(small):
    with pytest.raises(ValueError, match="'gain'.*got 0"):
        find_cosmic_rays(small.image, small.uncert, small.mask, gain=0, read_noise=5)
    with pytest.raises(ValueError, match="'read_noise'.*got -1"):
        find_cosmic_rays(small.image, small.uncert, small.mask, gain=1, read_noise=-1)
    with pytest.raises(ValueError, match="one shape"):
        find_cosmic_rays(small.image, small.uncert[:-1], small.mask, gain=1, read_noise=5)
    with pytest.raises(ValueError, match="uint8"):
        find_cosmic_rays(small.image, small.uncert, small.mask.astype(np.int16), gain=1, read_noise=5)
    with pytest.raises(ValueError, match="inplace"):
        find_cosmic_rays(
            small.image[:, ::2], small.uncert[:, ::2], small.mask[:, ::2], gain=1, read_noise=5, inplace=True
        )


# ---------------------------------------------------------------------------- MASK bit


def test_cosmic_mask_bit_is_described_where_it_may_be_set(tmp_path):
    """MASKB16 = 'COSMIC' in the MASK header of a product whose steps may set the bit
    (``mask_bits``); the other products keep the four core cards (and their bytes)."""
    assert COSMIC == 16 and MASK_BITS[COSMIC] == "COSMIC"
    assert len(set(MASK_BITS)) == len(MASK_BITS) and all(bin(bit).count("1") == 1 for bit in MASK_BITS)
    assert mask_header([*CORE_MASK_BITS, COSMIC])["MASKB16"] == "COSMIC" and "MASKB16" not in mask_header()
    shape = (4, 5)
    mask = np.zeros(shape, np.uint8)
    mask[1, 2] = COSMIC | BADPIX
    core = {"MASKB1": "BADPIX", "MASKB2": "SATURATE", "MASKB4": "WEAKFLAT", "MASKB8": "NONFINIT"}
    for name, bits, cards in (
        ("light.fits", [*CORE_MASK_BITS, COSMIC], {**core, "MASKB16": "COSMIC"}),
        ("master.fits", CORE_MASK_BITS, core),
    ):
        write_product(
            tmp_path / name, np.ones(shape, np.float32), np.ones(shape, np.float32), mask, fits.Header(), mask_bits=bits
        )
        with fits.open(tmp_path / name) as hdul:
            assert {k: v for k, v in hdul["MASK"].header.items() if k.startswith("MASKB")} == cards
    assert read_product(tmp_path / "light.fits").mask[1, 2] == COSMIC | BADPIX


# ----------------------------------------------------------------------- injection


def test_inject_cosmic_rays():
    rng = np.random.default_rng(5)
    frame = np.full((300, 400), 10.0)
    rays = simulate.inject_cosmic_rays(frame, rng, 500, adu_per_e=0.5)
    assert sum(rays.kinds.values()) == 500 and all(rays.kinds[k] > 80 for k in ("single", "cluster", "track"))
    np.testing.assert_array_equal(rays.mask, rays.charge_e > 0)
    np.testing.assert_allclose(frame, 10.0 + 0.5 * rays.charge_e.astype(np.float64), rtol=1e-6)
    hit = rays.charge_e[rays.mask]
    assert 5 <= hit.min() and hit.max() <= 3 * 5000 * 1.5  # tails: cluster share, overlaps
    assert np.quantile(hit, 0.1) < 300 and np.quantile(hit, 0.9) > 1500  # spread over decades
    # sharp: events are groups of 1 to ~10 pixels, not PSF blobs
    labels, n = ndimage.label(rays.mask, np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    assert (sizes == 1).sum() > 150 and np.median(sizes) <= 4
    again = simulate.inject_cosmic_rays(np.zeros((300, 400)), np.random.default_rng(5), 500)
    np.testing.assert_array_equal(again.charge_e, rays.charge_e)


@pytest.mark.parametrize("kind, sizes", [("single", {1}), ("cluster", {2, 3, 4}), ("track", set(range(3, 9)))])
def test_inject_each_kind(kind, sizes):
    rng = np.random.default_rng(8)
    kinds = {"single": 0.0, "cluster": 0.0, "track": 0.0, kind: 1.0}
    for _ in range(40):
        frame = np.zeros((40, 40))
        rays = simulate.inject_cosmic_rays(frame, rng, 1, kinds=kinds)
        labels, n = ndimage.label(rays.mask, np.ones((3, 3)))
        if n == 1 and not (rays.mask[0] | rays.mask[-1] | rays.mask[:, 0] | rays.mask[:, -1]).any():
            assert np.count_nonzero(rays.mask) in sizes


def test_inject_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        simulate.inject_cosmic_rays(np.zeros((5, 5)), np.random.default_rng(), 1, kinds={"single": 0.5})
    with pytest.raises(ValueError, match="amplitude_e"):
        simulate.inject_cosmic_rays(np.zeros((5, 5)), np.random.default_rng(), 1, amplitude_e=(0, 10))


# ------------------------------------------------------------------- cosmetic correction


def plane(shape=(60, 80)):
    """a + b x + c y, exactly representable in float32 (and its median)."""
    y, x = np.indices(shape)
    return (500.0 + 2.0 * x + 3.0 * y).astype(np.float32)


def test_cosmetic_exact_on_a_smooth_image():
    image = plane()
    truth = image.copy()
    uncert = np.full(image.shape, 4.0, np.float32)
    mask = np.zeros(image.shape, np.uint8)
    rng = np.random.default_rng(1)
    bad = rng.choice(image.size, 40, replace=False)
    image.reshape(-1)[bad[:20]] = 60000.0  # hot
    image.reshape(-1)[bad[20:]] = 0.0  # dead
    mask.reshape(-1)[bad] = BADPIX
    isolated = ~ndimage.binary_dilation(mask > 0, np.ones((3, 3)), iterations=1) | (mask > 0)
    result = correct_cosmetic(image, uncert, mask)
    assert result.replaced == 40 and result.unfilled == 0
    flagged = mask > 0
    lone = flagged & (ndimage.convolve(flagged.astype(int), np.ones((3, 3)), mode="constant") == 1)
    edge = np.zeros(image.shape, bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    exact = lone & ~edge
    assert exact.sum() > 30 and isolated.any()
    np.testing.assert_array_equal(result.image[exact], truth[exact])  # exact: symmetric neighbours
    assert np.all(np.abs(result.image[flagged] - truth[flagged]) <= 3.0)  # others: within a step
    np.testing.assert_array_equal(result.image[~flagged], image[~flagged])  # nothing else changed
    np.testing.assert_array_equal(result.uncert[~flagged], uncert[~flagged])
    np.testing.assert_allclose(result.uncert[exact], MEDIAN_EFFICIENCY * 4.0 / np.sqrt(8), rtol=1e-6)
    assert result.image is not image and (image.reshape(-1)[bad[:20]] == 60000.0).all()  # inputs kept


def test_cosmetic_keeps_the_flags_and_honours_other_bits():
    image, uncert = plane(), np.full((60, 80), 2.0, np.float32)
    mask = np.zeros(image.shape, np.uint8)
    image[10, 10], mask[10, 10] = 9999.0, BADPIX
    image[10, 11], mask[10, 11] = 65000.0, SATURATED  # next to it: not used
    image[30, 30], mask[30, 30] = np.nan, NONFINITE
    image[40, 40], mask[40, 40] = 7777.0, COSMIC
    before = mask.copy()
    result = correct_cosmetic(image, uncert, mask)
    np.testing.assert_array_equal(mask, before)  # MASK only read
    assert result.image[10, 10] == np.median(np.delete(plane()[9:12, 9:12].ravel(), [4, 5]))
    assert result.uncert[10, 10] == pytest.approx(MEDIAN_EFFICIENCY * 2.0 / np.sqrt(7))
    assert np.isnan(result.image[30, 30]) and result.image[40, 40] == 7777.0  # bits not asked for
    both = correct_cosmetic(image, uncert, mask, {"bits": BADPIX | NONFINITE | COSMIC})
    assert both.replaced == 3
    assert both.image[30, 30] == plane()[30, 30] and both.image[40, 40] == plane()[40, 40]
    assert both.image[10, 11] == 65000.0


def test_cosmetic_clusters_larger_than_the_box():
    """A 7x7 dead block, radius 1: its outer ring is filled from outside, its inner 5x5
    has no usable neighbour and is left as it was (value and UNCERT), flag kept; radius
    4 fills it all. A bad column is filled from its two sides."""
    image, uncert = plane(), np.full((60, 80), 3.0, np.float32)
    mask = np.zeros(image.shape, np.uint8)
    image[20:27, 30:37], uncert[20:27, 30:37], mask[20:27, 30:37] = -5.0, 99.0, BADPIX
    image[:, 60], mask[:, 60] = 0.0, BADPIX
    result = correct_cosmetic(image, uncert, mask)
    inner = np.s_[21:26, 31:36]
    assert result.unfilled == 25 and result.replaced == 24 + 60
    assert (result.image[inner] == -5.0).all() and (result.uncert[inner] == 99.0).all()
    ring = (mask[20:27, 30:37] > 0).copy()
    ring[1:6, 1:6] = False
    assert (result.image[20:27, 30:37][ring] != -5.0).all()
    np.testing.assert_array_equal(result.image[1:-1, 60], plane()[1:-1, 60])  # column: exact
    wide = correct_cosmetic(image, uncert, mask, {"radius": 4})
    assert wide.unfilled == 0 and (wide.image[inner] != -5.0).all()


def test_cosmetic_inplace_and_corners():
    image, uncert = plane((8, 9)), np.ones((8, 9), np.float32)
    mask = np.zeros((8, 9), np.uint8)
    mask[0, 0] = mask[7, 8] = BADPIX
    image[0, 0] = 1e6
    result = correct_cosmetic(image, uncert, mask, inplace=True)
    assert result.image is image and result.uncert is uncert
    assert image[0, 0] == np.median([plane((8, 9))[0, 1], plane((8, 9))[1, 0], plane((8, 9))[1, 1]])
    assert uncert[0, 0] == pytest.approx(MEDIAN_EFFICIENCY / np.sqrt(3))
    assert correct_cosmetic(image, None, mask).uncert is None


@pytest.mark.parametrize(
    "values, message",
    [
        ({"bits": 0}, "cosmetic 'bits': must be >= 1 and <= 255, got 0"),
        ({"radius": 9}, "cosmetic 'radius': must be >= 1 and <= 5, got 9"),
        ({"radius": 1.5}, "cosmetic 'radius': must be an integer, got 1.5"),
        ({"exclude_bits": -1}, "'exclude_bits'.*got -1"),
        ({"box": 3}, "unknown cosmetic option.*'box'"),
    ],
)
def test_cosmetic_settings_errors(values, message):
    with pytest.raises(ValueError, match=message):
        CosmeticSettings.from_dict(values)
    assert CosmeticSettings.from_dict(None) == CosmeticSettings()


def test_cosmetic_cost_on_a_4096_light():
    """Only the flagged pixels' boxes are read: 4096^2 with 0.1 % BADPIX in well under a
    second, against a full-frame 3x3 median filter of the same frame."""
    rng = np.random.default_rng(3)
    image = rng.normal(500, 10, (4096, 4096)).astype(np.float32)
    uncert = np.full(image.shape, 10.0, np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask.reshape(-1)[rng.choice(image.size, image.size // 1000, replace=False)] = BADPIX
    correct_cosmetic(image[:64], uncert[:64], mask[:64])  # imports, caches
    start = time.perf_counter()
    result = correct_cosmetic(image, uncert, mask, inplace=True)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    ndimage.median_filter(image[:512], 3)
    full_filter = (time.perf_counter() - start) * 8
    assert result.replaced == image.size // 1000
    assert seconds < 1.0 and seconds < full_filter, (seconds, full_filter)
