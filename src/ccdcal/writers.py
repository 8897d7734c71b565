"""Writing outputs: every file ccdcal writes appears complete or not at all.

Atomic writes
    A file is written to a new hidden file beside its target (``.<name>.<12 hex>.tmp``,
    in the same folder so on the same file system, with the permissions any new file
    gets: 0666 less the umask) and renamed over the target (``os.replace``) once all its
    bytes are written. A reader, or the next run after a kill, finds the old file or the
    new one, never part of one. A write that fails removes its temporary file; one left
    by a killed process is removed by the next run where it checks the outputs
    (``output_dir.find_incomplete``). Nothing is fsync'ed: atomic against a killed
    process, not against a crash of the machine.
O_DIRECT
    Outputs nothing reads again soon (calibrated lights: ``drop_cache``) are written
    around the page cache: opened with O_DIRECT, their bytes gathered into page-aligned
    staging chunks of 8 MiB, each written whole; the last is padded to 4 KiB and the file
    cut back to its length, so it is byte for byte what a plain write gives. On a VM or a
    busy node, copying a light's 150 MB into the page cache costs more CPU than
    calibrating it, and a night's gigabytes of dirty pages get the writing threads
    throttled by the kernel. Where the file system refuses O_DIRECT at open (EINVAL:
    older tmpfs, some FUSE), each image plane is handed to the disk and dropped from the
    cache once written (``posix_fadvise`` DONTNEED); where it refuses an aligned write,
    O_DIRECT is turned off for the rest of the file. Where the system has no O_DIRECT or
    no posix_fadvise (macOS, Windows), or ``CCDCAL_PORTABLE_IO`` is set, the file is
    written plainly (ccdcal.platform_io): the same bytes, through the page cache.
The background writer
    ``BackgroundWriter`` is one thread that does the disk writes, closing and renaming of
    the files handed to it, in the order handed, while the threads that make the files go
    on with their next frame. Its memory is fixed: the staging chunks come from a pool
    (``POOL_MB``, 64 MiB), and a thread making a file waits for a chunk only when all are
    queued, i.e. when the disk is what limits. Each file's Future gives its path once it
    is in place, or raises what went wrong; leaving the writer's ``with`` block waits for
    every file. Without a writer, the thread making a file writes it on the spot, through
    a staging chunk of its own.
Disk full
    No space or quota left (ENOSPC, EDQUOT) is raised as an OSError that says so, naming
    the file system's mount point and the file, and says to free space and run the same
    command again (``disk_full``); also where astropy masks it (an OSError '1000000
    requested and 261424 written' without errno, then an AttributeError from its clean-up
    over it).
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import queue
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import platform_io
from .platform_io import fcntl

if TYPE_CHECKING:  # numpy and astropy are imported where used: a job that only links files starts fast
    from astropy.io import fits


class _HandedToDisk:
    """A binary file-like over an open file, for astropy's writer: every large piece
    written (an image plane) is handed to the disk and dropped from the page cache at
    once (``posix_fadvise`` DONTNEED), so that no more than one plane per writer is dirty
    at a time. astropy writes the planes of a file-like object with ``write(memoryview)``
    (no copy)."""

    #: Pieces smaller than this (headers, padding) are left to the kernel.
    LARGE = 1 << 20

    def __init__(self, handle) -> None:
        self._handle = handle
        self._advise = True
        self.name = handle.name
        self.mode = "wb"

    def write(self, data) -> int:
        written = self._handle.write(data)
        if written >= self.LARGE and self._advise:
            self._handle.flush()
            try:
                os.posix_fadvise(self._handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:  # advice only: a file system that does not take it is written as usual
                self._advise = False
        return written

    def flush(self) -> None:
        self._handle.flush()

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)


def _temporary_beside(path: Path, direct: bool = False) -> tuple[int, str, bool]:
    """A new hidden file in ``path``'s folder (made if missing), open for writing, with
    the permissions any new file gets (0666 less the umask, as the kernel applies it;
    ``tempfile.mkstemp`` would make it 0600, readable by its owner alone). With
    ``direct``, opened with O_DIRECT where the system and file system allow it; the third
    value says whether it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | platform_io.O_CLOEXEC | platform_io.O_BINARY
    o_direct = getattr(os, "O_DIRECT", 0) if direct and platform_io.DIRECT_WRITES else 0
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            if o_direct:
                try:
                    return os.open(tmp, flags | o_direct, 0o666), tmp, True
                except OSError as exc:  # EINVAL: a file system without O_DIRECT (older tmpfs, some FUSE)
                    if exc.errno != errno.EINVAL:
                        raise
                    Path(tmp).unlink(missing_ok=True)
                    o_direct = 0
            return os.open(tmp, flags, 0o666), tmp, False
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


_STAGING = threading.local()


def _run_task(task: Callable[[], Any], future: Future) -> None:
    """Run ``task``, its result or exception into ``future``."""
    try:
        future.set_result(task())
    except BaseException as exc:  # handed to whoever waits on the file
        future.set_exception(exc)


class _WriteAtOnce:
    """The writer of a file written by the thread that makes it: that thread's own
    staging chunk, and every task run on the spot (see ``BackgroundWriter``)."""

    def take_chunk(self) -> mmap.mmap:
        staging = getattr(_STAGING, "buffer", None)
        if staging is None:
            staging = _STAGING.buffer = mmap.mmap(-1, _DirectWriter.CHUNK)  # page-aligned
        return staging

    def give_back(self, chunk: mmap.mmap) -> None:
        pass

    def submit(self, task: Callable[[], Any]) -> Future:
        future: Future = Future()
        _run_task(task, future)
        return future


class _DirectWriter:
    """A binary file-like for astropy's writer over a descriptor opened with O_DIRECT:
    the bytes go from an aligned buffer straight to the disk, not through the page cache.

    On a VM (and on a busy node) copying a light's 150 MB into the page cache costs more
    CPU than calibrating it, and a night's gigabytes of dirty pages get the writer
    throttled; nothing reads the calibrated light again soon. What astropy writes is
    gathered into a page-aligned staging buffer of CHUNK bytes, written whole; the last
    write is padded to DIRECT_ALIGN and the file cut to its length, so the file is byte
    for byte what a plain write gives. Where a write is refused (EINVAL: alignment the
    file system does not take), O_DIRECT is turned off and the rest written as usual.

    The chunks are taken from and handed to a ``writer``: a ``BackgroundWriter`` (its
    pool, its thread writes them), or by default ``_WriteAtOnce`` (this thread's own
    chunk, written on the spot). A write that fails is kept and raised by ``finish``.
    """

    CHUNK = 8 << 20
    #: File offsets, lengths and memory of O_DIRECT writes are multiples of this
    #: (4 KiB covers devices with 512-byte and 4 KiB logical blocks).
    DIRECT_ALIGN = 4096

    def __init__(self, fd: int, name: str, writer: BackgroundWriter | _WriteAtOnce) -> None:
        self._fd = fd
        self.name = name
        self.mode = "wb"
        self.size = 0
        self.direct = True
        self._writer = writer
        self._error: BaseException | None = None  # the first failed write
        self._take_staging()

    def _take_staging(self) -> None:
        import numpy as np

        self._staging = self._writer.take_chunk()
        self._bytes = np.frombuffer(self._staging, dtype=np.uint8)
        self._fill = 0

    def write(self, data) -> int:
        import numpy as np

        view = memoryview(data).cast("B")
        n, done = len(view), 0
        while done < n:
            take = min(self.CHUNK - self._fill, n - done)
            self._bytes[self._fill : self._fill + take] = np.frombuffer(view[done : done + take], dtype=np.uint8)
            self._fill += take
            done += take
            if self._fill == self.CHUNK:
                self._hand_over(self.CHUNK)
        self.size += n
        return n

    def _hand_over(self, length: int, last: bool = False) -> None:
        """Hand the staging buffer's first ``length`` bytes to the writer (and, unless
        ``last``, take the next chunk)."""
        staging, writer = self._staging, self._writer

        def write_chunk() -> None:
            try:
                if self._error is None:
                    self._write_staged(staging, length)
            except BaseException as exc:
                self._error = exc
            finally:
                writer.give_back(staging)

        self._bytes = self._staging = None
        writer.submit(write_chunk)
        if not last:
            self._take_staging()

    def _give_back_staging(self) -> None:
        if self._staging is not None:
            self._writer.give_back(self._staging)
            self._bytes = self._staging = None

    def _write_staged(self, staging: mmap.mmap, length: int) -> None:
        view = memoryview(staging)[:length]
        done = 0
        try:
            while done < length:
                try:
                    done += os.write(self._fd, view[done:])
                except OSError as exc:
                    if exc.errno != errno.EINVAL or not self.direct:
                        raise
                    fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                    self.direct = False
        finally:
            view.release()

    def finish(self, path: Path) -> Future:
        """Write what is left (padded to the alignment; the file is then cut to its
        length), close the file and rename it to ``path``; on any failure remove it. The
        Future (done at once with ``_WriteAtOnce``) gives ``path`` or the error."""
        length = -(-self._fill // self.DIRECT_ALIGN) * self.DIRECT_ALIGN
        self._bytes[self._fill : length] = 0  # cut off again when O_DIRECT was turned off
        if self._fill:
            self._hand_over(length, last=True)
        self._give_back_staging()
        return self._writer.submit(lambda: self._close(path))

    def abandon(self) -> None:
        """Close and remove the file (after its chunks are written)."""
        self._give_back_staging()
        self._writer.submit(lambda: self._close(None))

    def _close(self, path: Path | None) -> Path | None:
        """Close the file and rename it to ``path``; with None, remove it."""
        try:
            try:
                if path is not None and self._error is not None:
                    raise self._error
                if path is not None:
                    os.ftruncate(self._fd, self.size)
            finally:
                os.close(self._fd)
            if path is not None:
                os.replace(self.name, path)
        except BaseException:
            Path(self.name).unlink(missing_ok=True)
            raise
        if path is None:
            Path(self.name).unlink(missing_ok=True)
        return path

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        if (whence == 0 and offset == self.size) or (whence in (1, 2) and offset == 0):
            return self.size
        raise io.UnsupportedOperation("a file written around the page cache is written in order")


class BackgroundWriter:
    """One thread that finishes the files handed to it (``write_fits_atomic(writer=...)``):
    their disk writes, closing and renaming into place, in the order handed. The threads
    that make the files go on with their next frame meanwhile: a 2048^2 light's 38 MB
    keep the disk ~17 ms, half of what calibrating it takes, and a light job whose
    threads each waited for their own writes kept neither the cores nor the disk busy.

    The bytes pass in staging chunks of ``_DirectWriter.CHUNK`` from a pool of ``chunks``
    (``chunks`` x 8 MiB of memory, whatever the size and number of frames); a maker waits
    for a chunk only when all are queued, i.e. when the disk is what limits. The pool is
    a stack, so a writer that keeps up touches the memory of few chunks.

    A context manager: leaving it waits until every file handed is written (or has
    failed; each file's Future says which).
    """

    #: Staging chunks in the pool, and the memory they take (MiB).
    CHUNKS = 8
    POOL_MB = CHUNKS * _DirectWriter.CHUNK >> 20

    def __init__(self, chunks: int = CHUNKS) -> None:
        self._free: queue.LifoQueue = queue.LifoQueue()
        for _ in range(chunks):
            self._free.put(mmap.mmap(-1, _DirectWriter.CHUNK))  # page-aligned, as O_DIRECT needs
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ccdcal-writer", daemon=True)
        self._thread.start()

    def take_chunk(self) -> mmap.mmap:
        """A free staging chunk (waits while all are queued)."""
        return self._free.get()

    def give_back(self, chunk: mmap.mmap) -> None:
        self._free.put(chunk)

    def submit(self, task: Callable[[], Any]) -> Future:
        """Run ``task`` on the writer's thread after everything handed before it."""
        future: Future = Future()
        self._tasks.put((task, future))
        return future

    def _run(self) -> None:
        while (item := self._tasks.get()) is not None:
            _run_task(*item)

    def close(self) -> None:
        """Wait for everything handed, then end the thread."""
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() or not os.path.ismount(path):
        if path.parent == path:
            break
        path = path.parent
    return path


#: astropy's words for a write the disk took only part of (an OSError with no errno).
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def disk_full(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """When ``exc`` is, or masks, a full disk or quota, an OSError that says so plainly for
    ``path`` (its cause the disk's own error), else None. Raise it as it is. (astropy
    reports a full disk as '1000000 requested and 261424 written', with no errno, and its
    clean-up then raises an AttributeError over it.)"""
    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes and contexts
        if seen is None:
            return None
        if isinstance(seen, OSError) and (
            seen.errno in (errno.ENOSPC, errno.EDQUOT) or (seen.errno is None and _SHORT_WRITE.match(str(seen)))
        ):
            code = errno.EDQUOT if seen.errno == errno.EDQUOT else errno.ENOSPC
            what = "no quota" if code == errno.EDQUOT else "no space"
            error = OSError(
                code,
                f"{what} left on the file system at {_mount_point(Path(path))} "
                f"(writing {path}); free some space and run the same command again",
            )
            error.__cause__ = seen  # the disk's own error, not what masked it
            return error
        seen = seen.__cause__ or seen.__context__
    return None


def write_fits_atomic(
    hdul: fits.HDUList,
    path: str | os.PathLike,
    checksum: bool = True,
    drop_cache: bool = False,
    writer: BackgroundWriter | None = None,
) -> Future | None:
    """``_write_fits_atomic`` (below), a full disk reported as such."""
    try:
        return _write_fits_atomic(hdul, path, checksum, drop_cache, writer)
    except Exception as exc:
        full = disk_full(exc, path)
        if full is None:
            raise
        raise full from full.__cause__  # the disk's own error (disk_full), not what masked it


def _write_fits_atomic(
    hdul: fits.HDUList,
    path: str | os.PathLike,
    checksum: bool = True,
    drop_cache: bool = False,
    writer: BackgroundWriter | None = None,
) -> Future | None:
    """Write ``hdul`` to ``path`` via a temporary file in the same folder and a rename.

    CHECKSUM/DATASUM cards are added unless ``checksum`` is False; nothing time-dependent
    is written. ``drop_cache``, for outputs nothing reads again soon: the file is written
    around the page cache (O_DIRECT, ``_DirectWriter``), or where the file system does not
    allow that, each image plane is handed to the disk and dropped from the page cache as
    soon as it is written (``posix_fadvise`` DONTNEED). Either way a night's gigabytes of
    dirty pages do not hold up the writer (Linux throttles writers by their dirty pages).

    With a ``writer`` (``drop_cache`` implied) this returns once the file's bytes are
    made: the disk writes and the rename are the writer's (``BackgroundWriter``), and the
    Future returned gives ``path`` once the file is in place, or raises what went wrong.
    Without one the file is in place on return (None).
    """
    path = Path(path)
    for hdu in hdul if checksum else ():
        # astropy's default comment is the wall-clock time: give a fixed one instead
        hdu.add_checksum(when="FITS checksum")
    drop_cache = drop_cache or writer is not None
    fd, tmp, direct = _temporary_beside(path, direct=drop_cache)
    if direct:
        try:
            out = _DirectWriter(fd, tmp, writer or _WriteAtOnce())
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        try:
            hdul.writeto(out, checksum=False)
        except BaseException:
            out.abandon()
            raise
        finished = out.finish(path)
        if writer is None:
            finished.result()  # in place, or its error raised
            return None
        return finished
    try:
        with os.fdopen(fd, "wb") as handle:
            dropping = drop_cache and platform_io.FADVISE
            hdul.writeto(_HandedToDisk(handle) if dropping else handle, checksum=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if writer is None:
        return None
    done: Future = Future()
    done.set_result(path)
    return done


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write text (UTF-8, newlines as they are) to ``path`` atomically (``write_bytes_atomic``)."""
    write_bytes_atomic(text.encode("utf-8"), path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically (a full disk reported as such)."""
    path = Path(path)
    fd, tmp, _ = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full(exc, path) if isinstance(exc, Exception) else None
        if full is None:
            raise
        raise full from full.__cause__  # the disk's own error (disk_full), not what masked it


def _unique_beside(dest: Path) -> Path:
    """A new hidden name in ``dest``'s folder (made if missing), as the atomic writes use."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"


def link_or_copy(source: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Hard-link ``source`` to ``dest`` (a copy across file systems), replacing ``dest`` in
    one rename: a reader finds the old file or the new one."""
    dest = Path(dest)
    tmp = _unique_beside(dest)
    try:
        os.link(source, tmp)
    except OSError:
        copy_atomic(source, dest)
        return
    os.replace(tmp, dest)


def copy_atomic(source: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy to a temporary name beside ``dest`` and rename: a file of its own (a hard link
    would share its timestamps, which Snakemake touches, with the original). Two copies
    to the same ``dest`` at once do not share a temporary file."""
    dest = Path(dest)
    tmp = _unique_beside(dest)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
