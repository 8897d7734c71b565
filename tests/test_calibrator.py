"""The low-level Calibrator on synthetic frames: parameters, per-image overrides, masters
left out, user overscan functions and XParallax's output options."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from conftest import o_direct_available

from ccdcal import Calibrator
from ccdcal.products import write_product

NY, NX, ROWS = 60, 80, 20  # image rows, columns; overscan rows at the bottom (SuperPhot's example)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    overscan_level = 1000.0
    bias2d = 5.0 + rng.normal(0, 0.5, (NY, NX))
    flat = np.linspace(0.8, 1.2, NX)[None, :] * np.ones((NY, 1))
    signal = 2000.0
    raw = np.empty((NY + ROWS, NX))
    raw[:ROWS] = overscan_level + rng.normal(0, 3, (ROWS, NX))
    raw[ROWS:] = overscan_level + bias2d + flat * signal + rng.normal(0, 3, (NY, NX))
    header = fits.Header({"EXPTIME": 30.0, "IMAGETYP": "LIGHT"})
    fits.PrimaryHDU(np.round(raw).astype(np.uint16), header=header).writeto(tmp_path / "raw1.fits")
    zeros = np.zeros((NY, NX), np.float32)
    write_product(
        tmp_path / "bias.fits",
        bias2d.astype(np.float32),
        zeros + 0.3,
        zeros.astype(np.uint8),
        fits.Header({"EXPTIME": 0.0}),
    )
    write_product(
        tmp_path / "flat.fits", flat.astype(np.float32), zeros + 0.001, zeros.astype(np.uint8), fits.Header(), unit=""
    )
    return {"dir": tmp_path, "signal": signal, "flat": flat, "bias2d": bias2d}


def superphot(files, **extra):
    parameters = dict(
        overscans=[dict(xmin=0, xmax=NX, ymin=0, ymax=ROWS)],
        overscan_method="median",
        master_bias=files["dir"] / "bias.fits",
        gain=4.0,
        image_area=dict(xmin=0, xmax=NX, ymin=ROWS, ymax=NY + ROWS),
    )
    return Calibrator(**{**parameters, **extra})


def test_superphot_workflow_calibrates_and_overrides_per_image(files):
    d = files["dir"]
    calibrate = superphot(files)
    calibrate.set_masters(flat=d / "flat.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "calib1.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "calib2.fits", gain=8.0)
    with fits.open(d / "calib1.fits") as one, fits.open(d / "calib2.fits") as two:
        assert abs(np.median(one[0].data) - files["signal"]) < 2
        assert one[0].header["GAINUSED"] == 4.0 and two[0].header["GAINUSED"] == 8.0
        assert np.array_equal(one[0].data, two[0].data)  # the gain only changes the noise model
        assert np.median(two["UNCERT"].data) < np.median(one["UNCERT"].data)
        assert one[0].data.shape == (NY, NX)
    assert calibrate.gain == 4.0  # the override was for that image only


def test_a_master_set_to_none_is_not_applied(files):
    d = files["dir"]
    calibrate = superphot(files, master_flat=d / "flat.fits")
    calibrate.set_masters(flat=None)
    calibrate(raw=d / "raw1.fits", calibrated=d / "flatless.fits")
    data = fits.getdata(d / "flatless.fits")
    np.testing.assert_allclose(np.median(data / files["flat"]), files["signal"], rtol=1e-3)
    header = fits.getheader(d / "flatless.fits")
    # no read noise given, none in the header or the bias: said, not a silent 0
    assert header["CALFLAGS"] == "NODARK,NOFLAT,NORDNOISE"
    assert (header["RNUSED"], header["RNSOURCE"]) == (0.0, "unknown")
    assert (header["GAINUSED"], header["GAINSRC"]) == (4.0, "parameter")
    calibrate(raw=d / "raw1.fits", calibrated=d / "raw.fits", master_bias=None)
    with_bias = fits.getdata(d / "flatless.fits").astype(np.float64)
    np.testing.assert_allclose(fits.getdata(d / "raw.fits") - with_bias, files["bias2d"], atol=1e-3)


def test_user_overscan_function(files):
    d = files["dir"]
    calls = []

    def subtract_mean(image, overscans):
        (o,) = overscans
        calls.append(o)
        return image - image[o["ymin"] : o["ymax"], o["xmin"] : o["xmax"]].mean()

    superphot(files, overscan_method=subtract_mean)(raw=d / "raw1.fits", calibrated=d / "f.fits")
    superphot(files, overscan_method="mean")(raw=d / "raw1.fits", calibrated=d / "m.fits")
    assert calls == [dict(xmin=0, xmax=NX, ymin=0, ymax=ROWS)]
    np.testing.assert_allclose(fits.getdata(d / "f.fits"), fits.getdata(d / "m.fits"), atol=1e-3)


def test_unknown_parameter_is_named(files):
    with pytest.raises(TypeError, match="overscan_methd"):
        Calibrator(overscan_methd="median")
    with pytest.raises(TypeError, match="gian"):
        superphot(files)(raw=files["dir"] / "raw1.fits", calibrated=files["dir"] / "x.fits", gian=2)


def test_an_unknown_overscan_method_is_refused_naming_the_known_ones(files):
    from ccdcal.overscan import METHODS

    d = files["dir"]
    with pytest.raises(ValueError, match="overscan_method 'medain': give one of " + ", ".join(METHODS)):
        superphot(files, overscan_method="medain")(raw=d / "raw1.fits", calibrated=d / "x.fits")
    assert not (d / "x.fits").exists()


def test_output_same_as_input_is_uint16_within_half_an_adu(files):
    d = files["dir"]
    calibrate = superphot(files, master_flat=d / "flat.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "float.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "same.fits", output_format="same")
    with fits.open(d / "same.fits", do_not_scale_image_data=True) as raw_hdul:
        assert raw_hdul[0].header["BITPIX"] == 16 and raw_hdul[0].header["BZERO"] == 32768
    same, header = fits.getdata(d / "same.fits"), fits.getheader(d / "same.fits")
    assert same.dtype == np.uint16
    assert np.max(np.abs(same - fits.getdata(d / "float.fits"))) <= 0.5
    assert header["OUTFMT"] == "same" and header["NCLIPLO"] == 0 and "rounded" in str(header["HISTORY"])
    assert fits.getdata(d / "same.fits", extname="UNCERT").dtype.kind == "f"


def test_normalize_sets_the_mean_and_scales_the_uncertainty(files):
    d = files["dir"]
    calibrate = superphot(files, master_flat=d / "flat.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "plain.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "norm.fits", normalize=1000.0)
    plain, norm = fits.open(d / "plain.fits"), fits.open(d / "norm.fits")
    assert np.mean(norm[0].data, dtype=np.float64) == pytest.approx(1000.0, rel=1e-6)
    factor = norm[0].header["NORMSCAL"]
    np.testing.assert_allclose(norm["UNCERT"].data, plain["UNCERT"].data * factor, rtol=1e-6)
    plain.close()
    norm.close()


def test_fits_checksums_are_optional_for_lights(files):
    d = files["dir"]
    calibrate = superphot(files)
    calibrate(raw=d / "raw1.fits", calibrated=d / "with.fits")
    calibrate(raw=d / "raw1.fits", calibrated=d / "without.fits", checksum=False)
    with fits.open(d / "with.fits", checksum=True) as hdul:
        assert all("CHECKSUM" in h.header and "DATASUM" in h.header for h in hdul)
    with fits.open(d / "without.fits") as hdul:
        assert not any("CHECKSUM" in h.header for h in hdul)
    np.testing.assert_array_equal(fits.getdata(d / "with.fits"), fits.getdata(d / "without.fits"))


def refuse_o_direct(monkeypatch):
    """os.open fails as on a file system without O_DIRECT (EINVAL)."""
    import errno
    import os

    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("shape", [(NY, NX), (2100, 1100)])  # the latter: planes over one 8 MiB chunk
@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("o_direct", ["used", "refused by the file system"])
@pytest.mark.parametrize("writes", ["in the caller", "by a background writer"])
def test_a_product_written_around_the_page_cache_is_the_same_file(
    tmp_path, monkeypatch, checksum, o_direct, shape, writes
):
    """drop_cache (what light outputs use) only changes how the bytes reach the disk
    (O_DIRECT, or where refused, planes dropped from the cache as written; by the caller
    or by a BackgroundWriter's thread): the file is byte for byte a plain write's, and no
    temporary file is left."""
    from ccdcal.writers import BackgroundWriter

    rng = np.random.default_rng(1)
    image = rng.normal(100, 5, shape).astype(np.float32)
    uncert = np.full(shape, 5, np.float32)
    mask = (rng.random(shape) < 0.01).astype(np.uint8)
    header = fits.Header({"OBJECT": "M31"})
    write_product(tmp_path / "out_False.fits", image, uncert, mask, header, checksum=checksum)
    if o_direct != "used":
        refuse_o_direct(monkeypatch)
    if writes == "in the caller":
        assert (
            write_product(tmp_path / "out_True.fits", image, uncert, mask, header, checksum=checksum, drop_cache=True)
            is None
        )
    else:
        with BackgroundWriter(chunks=2) as writer:
            written = write_product(
                tmp_path / "out_True.fits", image, uncert, mask, header, checksum=checksum, writer=writer
            )
        assert written.result() == tmp_path / "out_True.fits"
    assert (tmp_path / "out_True.fits").read_bytes() == (tmp_path / "out_False.fits").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_False.fits", "out_True.fits"]
    with fits.open(tmp_path / "out_True.fits", checksum=checksum) as hdul:
        np.testing.assert_array_equal(hdul["MASK"].data, mask)
        assert ("CHECKSUM" in hdul[0].header) == checksum


def test_a_direct_write_refused_midway_goes_on_as_usual(tmp_path, monkeypatch):
    """A file system may take O_DIRECT at open and refuse the writes (alignment): the
    writer turns O_DIRECT off and writes the rest through the page cache, same bytes."""
    import errno
    import fcntl
    import os

    from ccdcal.writers import BackgroundWriter, _DirectWriter

    real_write, refused = os.write, []

    def write(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0) and not refused:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    image = np.random.default_rng(3).normal(0, 1, (2100, 1100)).astype(np.float32)
    write_product(tmp_path / "plain.fits", image, image, np.zeros(image.shape, np.uint8), fits.Header())
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(_DirectWriter, "CHUNK", 1 << 20)
    write_product(
        tmp_path / "direct.fits", image, image, np.zeros(image.shape, np.uint8), fits.Header(), drop_cache=True
    )
    assert (tmp_path / "direct.fits").read_bytes() == (tmp_path / "plain.fits").read_bytes()
    refused.clear()
    with BackgroundWriter(chunks=2) as writer:  # the same, the chunks written by the writer's thread
        write_product(
            tmp_path / "queued.fits", image, image, np.zeros(image.shape, np.uint8), fits.Header(), writer=writer
        ).result()
    assert (tmp_path / "queued.fits").read_bytes() == (tmp_path / "plain.fits").read_bytes()
    if o_direct_available(tmp_path):
        assert refused  # O_DIRECT was in use here, then refused once
    elif os.environ.get("CI") == "true":
        pytest.fail(f"{tmp_path} has no O_DIRECT on this CI machine: the refused-midway path is untested")
    else:
        pytest.skip(f"{tmp_path} has no O_DIRECT: the plain path was checked, not the refused-midway one")


def test_a_background_writer_writes_what_many_threads_hand_it_and_fails_only_the_file_it_could_not_write(
    tmp_path, monkeypatch
):
    """Eight files made by two threads through a pool of two 1 MiB chunks (each file
    needs four, so the makers wait for the writer's thread): every file is a plain write's
    bytes. A disk write that fails fails that file's Future alone, and leaves no file of
    it, temporary or not."""
    import errno

    from ccdcal.parallel import map_in_threads
    from ccdcal.writers import BackgroundWriter, _DirectWriter

    if not o_direct_available(tmp_path):
        pytest.skip(
            "the file system under the tests' temporary folder has no O_DIRECT, "
            "and only files written around the page cache are written in the background"
        )
    rng = np.random.default_rng(4)
    planes = [rng.normal(0, 1, (700, 500)).astype(np.float32) for _ in range(8)]
    for i, image in enumerate(planes):
        write_product(tmp_path / f"plain{i}.fits", image, image, np.zeros(image.shape, np.uint8), fits.Header())
    real = _DirectWriter._write_staged

    def write_staged(self, staging, length):
        if "queued5.fits" in self.name and self.size > 2 << 20:  # the file's later chunks fail
            raise OSError(errno.EIO, "Input/output error")
        return real(self, staging, length)

    monkeypatch.setattr(_DirectWriter, "CHUNK", 1 << 20)
    monkeypatch.setattr(_DirectWriter, "_write_staged", write_staged)
    with BackgroundWriter(chunks=2) as writer:
        written = map_in_threads(
            lambda i: write_product(
                tmp_path / f"queued{i}.fits",
                planes[i],
                planes[i],
                np.zeros(planes[i].shape, np.uint8),
                fits.Header(),
                writer=writer,
            ),
            range(8),
            2,
        )
    for i, future in enumerate(written):
        if i == 5:
            with pytest.raises(OSError, match="Input/output"):
                future.result()
        else:
            assert future.result() == tmp_path / f"queued{i}.fits"
            assert future.result().read_bytes() == (tmp_path / f"plain{i}.fits").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "queued"))) == [
        f"queued{i}.fits" for i in range(8) if i != 5
    ]
    with pytest.raises(OSError, match="Input/output"):  # the same when the caller writes it
        write_product(
            tmp_path / "queued5.fits",
            planes[5],
            planes[5],
            np.zeros(planes[5].shape, np.uint8),
            fits.Header(),
            drop_cache=True,
        )
    assert not any(p.name.startswith((".queued5", "queued5")) for p in tmp_path.iterdir())


def test_a_file_system_that_refuses_the_advice_is_written_as_usual(tmp_path, monkeypatch):
    """Without O_DIRECT, posix_fadvise is advice: where it fails too (some FUSE or network
    file systems), the product is written all the same."""
    import errno
    import os

    asked = []

    def refuse(*args):
        asked.append(args)
        raise OSError(errno.ENOSYS, "Function not implemented")

    refuse_o_direct(monkeypatch)
    monkeypatch.setattr(os, "posix_fadvise", refuse)
    image = np.ones((600, 600), np.float32)  # planes over 1 MB: the advice is asked for
    write_product(tmp_path / "out.fits", image, image, np.zeros(image.shape, np.uint8), fits.Header(), drop_cache=True)
    assert len(asked) == 1  # asked once, for the first plane; not again once refused
    with fits.open(tmp_path / "out.fits") as hdul:
        np.testing.assert_array_equal(hdul["UNCERT"].data, image)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_outputs_get_the_permissions_of_any_new_file(tmp_path, umask):
    """Outputs are written through a temporary file and a rename, yet get 0666 less the
    umask, as any new file (staff sharing a night read each other's outputs); a write that
    fails leaves the previous file and no temporary file."""
    import os
    import stat

    from ccdcal.writers import BackgroundWriter, write_fits_atomic, write_text_atomic

    previous = os.umask(umask)
    try:
        image = np.ones((NY, NX), np.float32)
        write_product(
            tmp_path / "light.fits", image, image, np.zeros(image.shape, np.uint8), fits.Header(), drop_cache=True
        )
        write_text_atomic("a,b\n", tmp_path / "summary.csv")
        for name in ("light.fits", "summary.csv"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name

        class FailsHalfway(fits.HDUList):
            def writeto(self, fileobj, **kwargs):
                fileobj.write(b"SIMPLE  =" + b" " * 2871)
                raise OSError(5, "Input/output error")

        for around_the_cache in (False, True):
            with pytest.raises(OSError, match="Input/output"):
                write_fits_atomic(
                    FailsHalfway([fits.PrimaryHDU()]), tmp_path / "light.fits", drop_cache=around_the_cache
                )
        with BackgroundWriter() as writer, pytest.raises(OSError, match="Input/output"):
            write_fits_atomic(FailsHalfway([fits.PrimaryHDU()]), tmp_path / "light.fits", writer=writer)
    finally:
        os.umask(previous)
    with fits.open(tmp_path / "light.fits") as hdul:
        np.testing.assert_array_equal(hdul[0].data, image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["light.fits", "summary.csv"]


@pytest.mark.parametrize("shape, dtype", [((130, 7), np.float32), ((64, 5), np.uint16), ((9,), np.float32)])
def test_planes_swapped_to_fits_order_keep_their_values(shape, dtype):
    """The block-wise swap to big-endian gives the same values (rows not a whole number
    of blocks, integer planes, and the plain swap for other layouts)."""
    from ccdcal.products import _big_endian_in_place

    values = (np.random.default_rng(2).random(shape) * 60000).astype(dtype)
    swapped = _big_endian_in_place(values.copy())
    assert swapped.dtype.byteorder == ">" or swapped.dtype.itemsize == 1
    np.testing.assert_array_equal(swapped, values)
    strided = values.copy()[..., ::2]  # not C-contiguous: swapped as a whole
    expected = strided.copy()
    np.testing.assert_array_equal(_big_endian_in_place(strided), expected)


def test_masters_loaded_up_front_are_read_once(files, monkeypatch):
    """load_masters reads a group's masters together (planes and digests on threads); the
    lights then use them without reading the files again, and they equal read_product's."""
    import ccdcal.calibrator as calibrator_module
    from ccdcal.products import read_product, read_products

    paths = [files["dir"] / "bias.fits", files["dir"] / "flat.fits"]
    for mine, reference in zip(read_products(paths, threads=2), [read_product(p) for p in paths]):
        assert mine.path == reference.path and mine.digest == reference.digest
        for plane in ("data", "uncert", "mask"):
            np.testing.assert_array_equal(getattr(mine, plane), getattr(reference, plane))
        assert mine.header == reference.header

    calibrate = superphot(files, master_flat=files["dir"] / "flat.fits")
    calibrate.threads = 2
    calibrate.load_masters(paths + [paths[0]])
    monkeypatch.setattr(calibrator_module, "read_product", lambda path: pytest.fail(f"{path} read again"))
    out = calibrate(raw=files["dir"] / "raw1.fits", calibrated=files["dir"] / "calib1.fits")
    with fits.open(out) as hdul:
        assert hdul[0].header["FLATSUM"] == read_product(paths[1]).digest
        np.testing.assert_allclose(np.median(hdul[0].data), files["signal"], rtol=0.01)


# ------------------------------------------------------------------ bad input refused
@pytest.mark.parametrize(
    "link",
    [
        "the same path",
        "a symlink to the raw file as output",
        "the raw file given through a symlink",
        "a hard link to the raw file",
    ],
)
def test_an_output_that_is_the_raw_file_is_refused_and_the_raw_file_kept(files, link):
    """calibrated = raw (or a link to it, either way round) would write over the raw
    frame: refused before anything is written, naming both paths."""
    import os

    d = files["dir"]
    raw, output = d / "raw1.fits", d / "raw1.fits"
    if link == "a symlink to the raw file as output":
        output = d / "link.fits"
        output.symlink_to(raw)
    elif link == "the raw file given through a symlink":
        raw = d / "link.fits"
        raw.symlink_to(d / "raw1.fits")
    elif link == "a hard link to the raw file":
        output = d / "hard.fits"
        os.link(raw, output)
    before = (d / "raw1.fits").read_bytes()
    with pytest.raises(ValueError) as info:
        superphot(files)(raw=raw, calibrated=output)
    assert str(raw) in str(info.value) and str(output) in str(info.value)
    assert (d / "raw1.fits").read_bytes() == before
    assert output.is_symlink() == (link == "a symlink to the raw file as output")
    assert not any(p.name.startswith(".") for p in d.iterdir())  # no temporary file left


def _product_with(path, planes=("PRIMARY", "UNCERT", "MASK"), uncert_shape=(NY, NX)):
    hdus = [fits.PrimaryHDU(np.zeros((NY, NX), np.float32))]
    if "UNCERT" in planes:
        hdus.append(fits.ImageHDU(np.ones(uncert_shape, np.float32), name="UNCERT"))
    if "MASK" in planes:
        hdus.append(fits.ImageHDU(np.zeros((NY, NX), np.uint8), name="MASK"))
    fits.HDUList(hdus).writeto(path)


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("a raw frame", "not a ccdcal product (no UNCERT extension); give a master made by ccdcal"),
        ("no MASK", "not a ccdcal product (no MASK extension)"),
        ("UNCERT of another shape", "planes of different shapes"),
        ("truncated", "truncated: "),
        ("cut inside a header", "cut inside a header"),
        ("a text file", "not a readable FITS file"),
    ],
)
def test_a_master_that_is_not_a_whole_ccdcal_product_is_refused_naming_the_file(files, kind, problem):
    """read_product (the Calibrator's masters, the master and light jobs') raises
    FrameError naming the file and what is wrong with it, never a KeyError or a numpy
    reshape error naming no file; no output is written."""
    from ccdcal.frames import FrameError
    from ccdcal.products import read_product

    d = files["dir"]
    master = d / "masters" / "x.fits"
    master.parent.mkdir()
    whole = (d / "bias.fits").read_bytes()
    if kind == "a raw frame":
        master.write_bytes((d / "raw1.fits").read_bytes())
    elif kind == "no MASK":
        _product_with(master, planes=("PRIMARY", "UNCERT"))
    elif kind == "UNCERT of another shape":
        _product_with(master, uncert_shape=(NY, NX - 1))
    elif kind == "truncated":
        master.write_bytes(whole[:-3000])  # into the MASK data
    elif kind == "cut inside a header":
        with fits.open(d / "bias.fits") as hdul:
            mask_header_starts = hdul.fileinfo(2)["hdrLoc"]
        master.write_bytes(whole[: mask_header_starts + 100])
    else:
        master.write_text("SIMPLE? no, a text file\n")
    with pytest.raises(FrameError) as info:
        read_product(master)
    assert str(master) in str(info.value) and problem in str(info.value)
    if kind == "truncated":
        assert f"truncated: {len(whole) - 3000} bytes, the headers need {len(whole)}" in str(info.value)
    calibrate = superphot(files, master_bias=master)
    with pytest.raises(FrameError, match=r"x\.fits: "):
        calibrate(raw=d / "raw1.fits", calibrated=d / "out.fits")
    assert not (d / "out.fits").exists()
    calibrate.threads = 2  # a light job's way: the group's masters read together, on threads
    with pytest.raises(FrameError, match=r"x\.fits: "):
        calibrate.load_masters([d / "bias.fits", master])


def _camera_with(**values):
    from ccdcal.config import camera_defaults

    camera = camera_defaults()
    for what, value in values.items():
        camera[what] = {**camera[what], "value": value}
    return camera


@pytest.mark.parametrize(
    "what, value, source",
    [
        ("gain", 0.0, "parameter"),
        ("gain", -2.0, "parameter"),
        ("gain", float("nan"), "parameter"),
        ("gain", float("inf"), "parameter"),
        ("gain", 0.0, "camera profile"),
        ("gain", -1.5, "camera profile"),
        ("read_noise", -1.0, "parameter"),
        ("read_noise", float("nan"), "parameter"),
        ("read_noise", float("inf"), "parameter"),
        ("read_noise", -3.0, "camera profile"),
    ],
)
def test_a_gain_or_read_noise_that_is_not_a_positive_number_is_refused(files, what, value, source):
    """gain (e-/ADU) must be finite and > 0, read_noise (e-) finite and >= 0, whether
    given as a parameter or by the camera profile: ValueError naming it and the value,
    instead of a ZeroDivisionError or a NaN written into the header."""
    d = files["dir"]
    if source == "parameter":
        calibrate = superphot(files, **{what: value})
    else:
        calibrate = superphot(files, camera=_camera_with(**{what: value}), gain=None)
    with pytest.raises(ValueError) as info:
        calibrate(raw=d / "raw1.fits", calibrated=d / "out.fits")
    assert f"{what} = {value!r}" in str(info.value)
    assert not (d / "out.fits").exists()


RAW_NY, RAW_NX = 50, 70  # a raw frame that is not square, so NAXIS1 x NAXIS2 is told apart


@pytest.mark.parametrize(
    "parameter, given, problem",
    [
        ("overscans", dict(xmin=0, xmax=RAW_NX + 5, ymin=0, ymax=10), "lies outside"),  # partly outside
        ("overscans", dict(xmin=-5, xmax=RAW_NX, ymin=0, ymax=10), "lies outside"),  # would wrap around
        ("overscans", dict(xmin=0, xmax=RAW_NX, ymin=RAW_NY, ymax=RAW_NY + 10), "lies outside"),  # wholly
        ("overscans", "[1:75,1:10]", "lies outside"),
        ("overscans", "[1:70,51:60]", "lies outside"),
        ("overscans", dict(xmin=0, xmax=RAW_NX, ymin=10, ymax=5), "is empty"),
        ("overscan_data", dict(xmin=0, xmax=RAW_NX, ymin=10, ymax=RAW_NY + 1), "lies outside"),
        ("image_area", dict(xmin=0, xmax=RAW_NX, ymin=10, ymax=RAW_NY + 2), "lies outside"),
        ("image_area", dict(xmin=-10, xmax=RAW_NX, ymin=10, ymax=RAW_NY), "lies outside"),
        ("image_area", dict(xmin=20, xmax=20, ymin=10, ymax=RAW_NY), "is empty"),
        ("image_area", "[1:71,11:50]", "lies outside"),
    ],
)
def test_a_region_outside_the_raw_frame_is_refused_naming_it(tmp_path, parameter, given, problem):
    """Regions are checked against the raw frame before anything is written: ValueError
    naming the parameter, the region as given (0-based dict or FITS string) and the frame
    size NAXIS1 x NAXIS2 -- not clipped, not wrapped around, no NaN level."""
    fits.PrimaryHDU(np.full((RAW_NY, RAW_NX), 1000, np.uint16)).writeto(tmp_path / "raw.fits")
    parameters = dict(
        overscans=[dict(xmin=0, xmax=RAW_NX, ymin=0, ymax=10)],
        overscan_method="median",
        gain=1.0,
        image_area=dict(xmin=0, xmax=RAW_NX, ymin=10, ymax=RAW_NY),
    )
    parameters[parameter] = given if parameter == "image_area" else [given]
    with pytest.raises(ValueError) as info:
        Calibrator(**parameters)(raw=tmp_path / "raw.fits", calibrated=tmp_path / "out.fits")
    message = str(info.value)
    assert f"{parameter}[0] " in message or f"{parameter} " in message
    assert str(given) in message and problem in message
    assert f"{RAW_NX}x{RAW_NY}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.fits"]
