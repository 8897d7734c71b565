"""Overscan models and frame correction on synthetic frames with a known injected level.

Every frame gets Gaussian read noise of SIGMA = 5 ADU on every pixel. A per-line median of
n overscan pixels then scatters by ~1.2533 * SIGMA / sqrt(n) (the median's efficiency), a
whole-strip mean of N pixels by SIGMA / sqrt(N). Each tolerance below is derived from those
numbers (about 5 standard errors, so a correct method never fails by chance with the fixed
seeds, while a wrong level, shape or amplifier would be off by far more).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from ccdcal.camera import HeaderView
from ccdcal.overscan import METHODS, Amplifier, FrameCorrector, Layout, layout_for
from ccdcal.sections import Section

SIGMA = 5.0  # ADU, injected read noise
MEDIAN_EFF = 1.2533  # std(median) / std(mean) for Gaussian samples


def reader(arr):
    def read(rows, out=None):
        values = arr[rows].astype(np.float32)
        if out is None:
            return values
        out[...] = values
        return out

    return read


def serial_frame(level_of_row, ny=240, nx_data=100, gap=2, nx_os=18, seed=0):
    """Raw frame with data in columns 1..nx_data and a serial overscan after a gap.

    Returns (raw, science, overscan Section, data Section); level_of_row(y) with y = 1..ny (FITS).
    """
    rng = np.random.default_rng(seed)
    nx = nx_data + gap + nx_os
    y = np.arange(1, ny + 1, dtype=np.float64)
    level = level_of_row(y)[:, None]
    science = rng.uniform(0.0, 2000.0, (ny, nx_data))
    raw = np.zeros((ny, nx))
    raw[:, :nx_data] = science + level
    raw[:, nx_data : nx_data + gap] = 30000.0  # junk columns between data and overscan: never used
    raw[:, nx_data + gap :] = level
    raw += rng.normal(0.0, SIGMA, raw.shape)
    overscan = Section(nx_data + gap + 1, nx, 1, ny)
    data = Section(1, nx_data, 1, ny)
    return raw, science, overscan, data


def explicit_layout(camera_profile, shape, regions, trim, method, order=1, axis="auto"):
    profile = camera_profile(
        overscan={
            "method": method,
            "order": order,
            "axis": axis,
            "regions": [{"overscan": str(o), "data": str(d)} for o, d in regions],
        },
        trim=str(trim),
    )
    return layout_for(HeaderView({}), shape, profile)


# ------------------------------------------------------------------ serial overscan methods


@pytest.mark.parametrize("method", ["mean", "median"])
def test_constant_level_mean_and_median(camera_profile, method):
    raw, science, overscan, data = serial_frame(lambda y: np.full_like(y, 1000.0))
    layout = explicit_layout(camera_profile, raw.shape, [(overscan, data)], data, method)
    corrector = FrameCorrector(reader(raw), layout)
    n = overscan.shape[0] * overscan.shape[1]  # 240 * 18 = 4320 pixels
    tol = 5 * MEDIAN_EFF * SIGMA / np.sqrt(n)  # ~0.48 ADU
    assert corrector.models[0].shape == (1, 1)
    assert abs(corrector.levels[0] - 1000.0) < tol
    out, saturated = corrector.full()
    assert saturated is None
    assert out.dtype == np.float32 and out.shape == data.shape
    # the one number is subtracted from every data pixel, nothing else changes
    expected = raw[data.slices].astype(np.float32) - corrector.models[0]
    np.testing.assert_array_equal(out, expected)
    # and the result is the injected science (+ per-pixel noise) on average
    assert abs(float(np.mean(out - science))) < tol + 5 * SIGMA / np.sqrt(out.size)


def test_median_per_row_follows_a_ramp(camera_profile):
    ramp = lambda y: 1000.0 + 0.25 * y  # 60 ADU over 240 rows  # noqa: E731
    raw, _, overscan, data = serial_frame(ramp)
    layout = explicit_layout(camera_profile, raw.shape, [(overscan, data)], data, "median_per_row")
    corrector = FrameCorrector(reader(raw), layout)
    model = corrector.models[0]
    assert model.shape == (240, 1)  # one value per row
    truth = ramp(np.arange(1, 241))
    per_row = MEDIAN_EFF * SIGMA / np.sqrt(overscan.shape[1])  # ~1.48 ADU for 18 columns
    residual = model[:, 0] - truth
    assert np.max(np.abs(residual)) < 5 * per_row
    assert np.sqrt(np.mean(residual**2)) < 1.3 * per_row  # it really is per-row noise, no bias
    assert abs(np.mean(residual)) < 5 * per_row / np.sqrt(240)
    # the row values are exactly the medians of the overscan rows
    strip = raw[overscan.slices].astype(np.float32)
    np.testing.assert_array_equal(model[:, 0], np.median(strip, axis=1))


def test_polynomial_fits_a_ramp(camera_profile):
    ramp = lambda y: 1000.0 + 0.25 * y  # noqa: E731
    raw, science, overscan, data = serial_frame(ramp, seed=1)
    layout = explicit_layout(camera_profile, raw.shape, [(overscan, data)], data, "polynomial", order=1)
    corrector = FrameCorrector(reader(raw), layout)
    truth = ramp(np.arange(1, 241))
    per_row = MEDIAN_EFF * SIGMA / np.sqrt(overscan.shape[1])
    # a straight-line fit to 240 line medians: error at the ends ~ per_row * sqrt(4/240) ~ 0.19
    assert np.max(np.abs(corrector.models[0][:, 0] - truth)) < 5 * per_row * np.sqrt(4 / 240)
    out, _ = corrector.full()
    # each row of the output has had its own level removed: no ramp remains
    row_resid = np.mean(out - science, axis=1)
    slope = np.polyfit(np.arange(240), row_resid, 1)[0]
    assert abs(slope) < 0.01  # injected 0.25 ADU/row


def smooth_curve(y, ny=240):
    return 1000.0 + 20.0 * np.sin(np.pi * y / ny) + 0.05 * y


@pytest.mark.parametrize("method,order", [("chebyshev", 6), ("spline", 4)])
def test_chebyshev_and_spline_follow_a_smooth_curve(camera_profile, method, order):
    raw, _, overscan, data = serial_frame(smooth_curve, seed=2)
    layout = explicit_layout(camera_profile, raw.shape, [(overscan, data)], data, method, order=order)
    model = FrameCorrector(reader(raw), layout).models[0][:, 0]
    truth = smooth_curve(np.arange(1, 241))
    per_row = MEDIAN_EFF * SIGMA / np.sqrt(overscan.shape[1])  # ~1.48
    # a fit with p ~ 7-8 parameters to 240 line medians: pointwise error ~ per_row*sqrt(p/240)
    # ~ 0.27 on average, up to ~2x that at the ends; the model error of a degree-6 Chebyshev
    # or a 4-knot cubic spline on this curve is < 0.01 ADU.
    tol = 5 * per_row * np.sqrt(2 * 8 / 240)  # ~1.9 ADU, against a 20 ADU curve
    assert np.max(np.abs(model - truth)) < tol
    assert np.sqrt(np.mean((model - truth) ** 2)) < tol / 2
    # a straight line could not do this: proves the test can tell shapes apart
    line = np.polyval(np.polyfit(np.arange(1, 241), truth, 1), np.arange(1, 241))
    assert np.max(np.abs(line - truth)) > 3 * tol


# ------------------------------------------------------------------------ parallel overscan


def isis_frame(seed=3):
    """WHT ISIS-like: BIASSEC='[98:483,4105:4190]' (extra rows) and TRIMSEC='[1:483,1:4099]'."""
    rng = np.random.default_rng(seed)
    ny, nx = 4190, 483
    x = np.arange(1, nx + 1, dtype=np.float64)
    level = 900.0 + 0.05 * x  # varies along the columns (24 ADU across)
    raw = np.empty((ny, nx))
    raw[:] = level[None, :]
    science = rng.uniform(0.0, 1000.0, (4099, nx))
    raw[:4099] += science
    raw += rng.normal(0.0, SIGMA, raw.shape)
    header = {"BIASSEC": "[98:483,4105:4190]", "TRIMSEC": "[1:483,1:4099]"}
    return raw, science, level, header


def test_parallel_overscan_from_header_one_value_per_column(camera_profile):
    raw, science, level, header = isis_frame()
    profile = camera_profile(overscan={"method": "polynomial", "order": 1})  # regions/trim: header
    layout = layout_for(HeaderView(header), raw.shape, profile)
    assert layout.amplifiers == (Amplifier(Section(1, 483, 1, 4099), Section(98, 483, 4105, 4190)),)
    assert layout.trim == Section(1, 483, 1, 4099)
    assert layout.shape == (4099, 483)
    corrector = FrameCorrector(reader(raw), layout)
    model = corrector.models[0]
    assert model.shape == (1, 483)  # per column
    # 86 rows per column median: ~0.74 ADU each; the straight-line fit over 386 columns, also
    # extrapolated to columns 1..97, is good to ~0.74 * sqrt(4/386) * 2 ~ 0.15 ADU
    per_col = MEDIAN_EFF * SIGMA / np.sqrt(86)
    assert np.max(np.abs(model[0] - level)) < 5 * per_col * 2 * np.sqrt(4 / 386)
    out, _ = corrector.full()
    assert out.shape == (4099, 483)
    col_resid = np.mean(out - science, axis=0)  # 4099 rows: noise 5/64 per column
    assert np.max(np.abs(col_resid)) < 1.0  # the 24 ADU column ramp is gone everywhere


def test_median_per_row_with_overscan_not_covering_the_data_raises(camera_profile):
    raw, _, _, header = isis_frame()
    profile = camera_profile(overscan={"method": "median_per_row"})
    layout = layout_for(HeaderView(header), raw.shape, profile)
    with pytest.raises(ValueError) as info:
        FrameCorrector(reader(raw), layout)
    message = str(info.value)
    assert "[98:483,4105:4190]" in message and "[1:483,1:4099]" in message
    assert "polynomial" in message  # tells what to use instead


def test_median_per_row_serial_overscan_shorter_than_data_raises(camera_profile):
    raw, _, overscan, data = serial_frame(lambda y: 1000.0 + 0 * y)
    short = Section(overscan.x1, overscan.x2, 1, 100)
    layout = explicit_layout(camera_profile, raw.shape, [(short, data)], data, "median_per_row")
    with pytest.raises(ValueError, match=r"median_per_row.*\[103:120,1:100\].*\[1:100,1:240\]"):
        FrameCorrector(reader(raw), layout)


# --------------------------------------------------------------------------- two amplifiers


def kast_frame(ny=120, seed=4):
    """Lick Kast-like: two data halves, each with its own serial overscan and offset."""
    rng = np.random.default_rng(seed)
    nx = 2112
    y = np.arange(1, ny + 1, dtype=np.float64)[:, None]
    level1 = 1000.0 + 0.1 * y
    level2 = 1045.0 - 0.05 * y  # 45 ADU apart
    science = rng.uniform(0.0, 3000.0, (ny, 2048))
    raw = np.full((ny, nx), 20000.0)  # unused columns hold junk
    raw[:, :1024] = science[:, :1024] + level1
    raw[:, 1024:2048] = science[:, 1024:] + level2
    raw[:, 2050:2080] = level1  # [2051:2080]
    raw[:, 2082:2111] = level2  # [2083:2111]
    raw += rng.normal(0.0, SIGMA, raw.shape)
    regions = [
        (Section(2051, 2080, 1, ny), Section(1, 1024, 1, ny)),
        (Section(2083, 2111, 1, ny), Section(1025, 2048, 1, ny)),
    ]
    return raw, science, regions, level1[:, 0], level2[:, 0]


@pytest.mark.parametrize("method", ["median", "median_per_row", "polynomial"])
def test_two_amplifiers_each_corrected_by_its_own_overscan(camera_profile, method):
    raw, science, regions, level1, level2 = kast_frame()
    layout = explicit_layout(camera_profile, raw.shape, regions, "[1:2048,1:120]", method)
    corrector = FrameCorrector(reader(raw), layout)
    # median of 120*30 px: 0.10 ADU; the ramps (+-6 ADU / +-3 ADU) dominate for one number
    assert corrector.levels[0] == pytest.approx(np.mean(level1), abs=0.6)
    assert corrector.levels[1] == pytest.approx(np.mean(level2), abs=0.6)
    out, _ = corrector.full()
    assert out.shape == (120, 2048)
    left = out[:, :1024] - science[:, :1024]
    right = out[:, 1024:] - science[:, 1024:]
    # the right half had 45 ADU more offset: used with the wrong overscan it would be off by 45
    assert abs(left.mean()) < 0.5 and abs(right.mean()) < 0.5
    if method != "median":  # per-row models also take out the opposite ramps of the halves
        per_row = MEDIAN_EFF * SIGMA / np.sqrt(29)  # ~1.16 ADU
        assert np.max(np.abs(left.mean(axis=1))) < 5 * per_row
        assert np.max(np.abs(right.mean(axis=1))) < 5 * per_row


# --------------------------------------------------------------- layout from header / trim


def test_header_layout_equals_explicit_regions(camera_profile):
    raw, _, overscan, data = serial_frame(lambda y: 1000.0 + 0.25 * y, seed=5)
    header = {"BIASSEC": str(overscan), "DATASEC": str(data), "TRIMSEC": "[3:98,2:239]"}
    from_header = layout_for(HeaderView(header), raw.shape, camera_profile(overscan={"method": "median_per_row"}))
    explicit = explicit_layout(camera_profile, raw.shape, [(overscan, data)], "[3:98,2:239]", "median_per_row")
    assert from_header == explicit
    assert from_header.trim == Section(3, 98, 2, 239) and from_header.shape == (238, 96)
    out_h, _ = FrameCorrector(reader(raw), from_header).full()
    out_e, _ = FrameCorrector(reader(raw), explicit).full()
    np.testing.assert_array_equal(out_h, out_e)


def test_header_regions_read_through_keyword_in_explicit_list(camera_profile):
    raw, _, overscan, data = serial_frame(lambda y: 1000.0 + 0 * y)
    profile = camera_profile(overscan={"method": "mean", "regions": [{"overscan": "header", "data": "[1:100,1:240]"}]})
    layout = layout_for(HeaderView({"BIASSEC": str(overscan)}), raw.shape, profile)
    assert layout.amplifiers == (Amplifier(data, overscan),)
    with pytest.raises(ValueError, match="BIASSEC"):
        layout_for(HeaderView({}), raw.shape, profile)


def test_only_biassec_data_is_the_larger_side_and_trim_the_data(camera_profile):
    raw, _, overscan, _ = serial_frame(lambda y: 1000.0 + 0 * y)
    layout = layout_for(HeaderView({"BIASSEC": str(overscan)}), raw.shape, camera_profile())
    assert layout.amplifiers[0].data == Section(1, 102, 1, 240)  # everything left of the strip
    assert layout.trim == Section(1, 102, 1, 240)
    assert layout.method == "median"  # the schema default


def test_no_sections_in_header_means_no_correction_and_no_trim(camera_profile):
    raw, _, _, _ = serial_frame(lambda y: 1000.0 + 0 * y)
    layout = layout_for(HeaderView({}), raw.shape, camera_profile())
    assert not layout.corrects and layout.method == "none"
    assert layout.trim == Section.full(raw.shape)
    out, _ = FrameCorrector(reader(raw), layout).full()
    np.testing.assert_array_equal(out, raw.astype(np.float32))


def test_trim_cuts_after_correction(camera_profile):
    raw, _, overscan, data = serial_frame(lambda y: 1000.0 + 0.25 * y, seed=6)
    layout = explicit_layout(camera_profile, raw.shape, [(overscan, data)], "[11:90,21:200]", "median_per_row")
    corrector = FrameCorrector(reader(raw), layout)
    out, _ = corrector.full()
    assert out.shape == (180, 80)
    # trimmed pixel (0, 0) is raw column 11, row 21, minus the model of row 21
    model = corrector.models[0][:, 0]
    expected = raw[20:200, 10:90].astype(np.float32) - model[20:200, None]
    np.testing.assert_array_equal(out, expected)


def test_trim_none_keeps_the_whole_frame(camera_profile):
    raw, _, overscan, data = serial_frame(lambda y: 1000.0 + 0 * y)
    profile = camera_profile(
        overscan={"method": "mean", "regions": [{"overscan": str(overscan), "data": str(data)}]}, trim="none"
    )
    layout = layout_for(HeaderView({}), raw.shape, profile)
    out, _ = FrameCorrector(reader(raw), layout).full()
    assert out.shape == raw.shape
    # only the data region is corrected: the overscan itself is left as read
    np.testing.assert_array_equal(out[:, 102:], raw[:, 102:].astype(np.float32))
    assert abs(out[:, :100].mean() - (raw[:, :100].mean() - 1000.0)) < 0.5


# --------------------------------------------------------------------------- blocks, saturation


@pytest.mark.parametrize("method", ["median_per_row", "spline", "mean"])
def test_blocks_equal_full(camera_profile, method):
    raw, _, regions, _, _ = kast_frame(ny=150)
    layout = explicit_layout(camera_profile, raw.shape, regions, "[1:2048,5:147]", method, order=3)
    corrector = FrameCorrector(reader(raw), layout)
    full, full_sat = corrector.full(saturation=3000.0)
    assert full.shape == (143, 2048)
    edges = [0, 1, 37, 100, 142, 143]
    pieces = [corrector.block(a, b, saturation=3000.0) for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces]), full)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pieces]), full_sat)
    assert full_sat.any() and not full_sat.all()


def test_saturation_mask_from_raw_values(camera_profile):
    raw, _, overscan, data = serial_frame(lambda y: 1000.0 + 0 * y, seed=7)
    raw[:, :100] = np.clip(raw[:, :100], None, 60000.0)
    raw[10, 20] = 65535.0  # saturated in raw; 64535 after overscan correction
    raw[50, 60] = 65000.0  # exactly at the level: saturated (>=)
    raw[70, 5] = 64999.0  # just below
    raw[3, 101] = 65535.0  # in the junk column, outside the trim: not in the mask
    layout = explicit_layout(camera_profile, raw.shape, [(overscan, data)], data, "median")
    out, saturated = FrameCorrector(reader(raw), layout).full(saturation=65000.0)
    assert saturated.shape == out.shape == (240, 100)
    assert saturated.dtype == bool
    assert set(zip(*np.nonzero(saturated))) == {(10, 20), (50, 60)}
    assert out[10, 20] < 65000.0  # the corrected value alone would not have been flagged


# ----------------------------------------------------------------------------- bad geometry


def test_section_outside_the_frame_raises_naming_it(camera_profile):
    shape = (240, 120)
    with pytest.raises(ValueError, match=r"overscan section \[103:130,1:240\]"):
        layout_for(HeaderView({"BIASSEC": "[103:130,1:240]", "DATASEC": "[1:100,1:240]"}), shape, camera_profile())
    with pytest.raises(ValueError, match=r"trim section \[1:100,1:241\]"):
        layout_for(HeaderView({"TRIMSEC": "[1:100,1:241]"}), shape, camera_profile())
    with pytest.raises(ValueError, match=r"data section \[1:121,1:240\]"):
        explicit_layout(
            camera_profile, shape, [(Section(103, 120, 1, 240), Section(1, 121, 1, 240))], "[1:100,1:240]", "median"
        )


def test_bad_header_section_text_names_keyword_and_value(camera_profile):
    with pytest.raises(ValueError) as info:
        layout_for(HeaderView({"BIASSEC": "[0:10,1:240]"}), (240, 120), camera_profile())
    assert "BIASSEC" in str(info.value) and "[0:10,1:240]" in str(info.value)


def test_direct_layout_object_works_without_a_profile():
    raw, science, overscan, data = serial_frame(lambda y: 1000.0 + 0 * y, seed=8)
    layout = Layout(raw.shape, data, (Amplifier(data, overscan),), "mean")
    out, _ = FrameCorrector(reader(raw), layout).full()
    assert abs(float(np.mean(out - science))) < 0.6
    assert "mean" in layout.describe() and str(overscan) in layout.describe()


def test_overscan_overlapping_its_data_or_the_trim_raises_naming_both(camera_profile):
    """An overlap used to pass: the overscan level then includes science signal (or the
    overscan stays in the calibrated image), silently wrong in every light."""
    shape = (240, 120)
    with pytest.raises(ValueError) as info:
        explicit_layout(
            camera_profile, shape, [(Section(95, 120, 1, 240), Section(1, 100, 1, 240))], "[1:90,1:240]", "median"
        )
    assert "[95:120,1:240]" in str(info.value) and "data section [1:100,1:240]" in str(info.value)
    with pytest.raises(ValueError) as info:
        explicit_layout(
            camera_profile, shape, [(Section(103, 120, 1, 240), Section(1, 100, 1, 240))], "[1:110,1:240]", "median"
        )
    assert "[103:120,1:240]" in str(info.value) and "trim section [1:110,1:240]" in str(info.value)
    # from the header too, e.g. a BIASSEC inside the TRIMSEC; one row of overlap is enough
    with pytest.raises(ValueError, match=r"\[1:120,230:240\].*trim section \[1:120,1:230\]"):
        layout_for(
            HeaderView({"BIASSEC": "[1:120,230:240]", "DATASEC": "[1:120,1:229]", "TRIMSEC": "[1:120,1:230]"}),
            shape,
            camera_profile(),
        )
    # touching is not overlapping; trim 'none' keeps the overscan in the image on purpose
    explicit_layout(
        camera_profile, shape, [(Section(101, 120, 1, 240), Section(1, 100, 1, 240))], "[1:100,1:240]", "median"
    )
    explicit_layout(camera_profile, shape, [(Section(101, 120, 1, 240), Section(1, 100, 1, 240))], "none", "median")


def test_section_partly_outside_the_frame_raises():
    """check_inside used to look at x2 and y2 only: a section starting before pixel 1 or
    written backwards past the edge passed."""
    shape = (240, 120)
    Section(1, 120, 1, 240).check_inside(shape)  # exactly the frame
    for section in (Section(0, 10, 1, 240), Section(1, 10, 0, 5), Section(130, 100, 1, 240), Section(1, 10, 300, 200)):
        with pytest.raises(ValueError, match=re.escape(str(section))):
            section.check_inside(shape, "data section")


def test_overscan_over_the_whole_frame_leaves_no_data(camera_profile):
    with pytest.raises(ValueError, match=r"\[1:120,1:240\]"):
        layout_for(HeaderView({"BIASSEC": "[1:120,1:240]"}), (240, 120), camera_profile())


def test_the_schema_offers_exactly_the_registered_overscan_methods():
    """overscan.method in the configuration schema (workflow/schemas/config.schema.yaml) is
    one of the registry's names, each of them, in its order."""
    from ccdcal.config import schema

    method = schema()["$defs"]["camera"]["properties"]["overscan"]["properties"]["method"]
    assert method["enum"] == list(METHODS)
    assert method["default"] in METHODS
