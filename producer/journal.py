"""The spool's append-only journal: how an event becomes durable in ~2 µs.

A SQLite commit costs ~20 µs here even in WAL mode with ``synchronous=NORMAL``, and a
tracked call needs two of them (start, end), which alone would exceed the overhead target.
So the hot path appends each call's events with ONE ``os.write`` to a per-process journal
file (``<spool>.journal/<host>-<pid>-<n>.log``); the relay thread moves them into the
SQLite outbox in batches (one transaction, which also stores how far the journal was read),
then sends them. Durability is the same as SQLite WAL with ``synchronous=NORMAL``: a killed
process loses nothing (the data is in the OS page cache), a power cut may lose the tail.

Frames: ``MAGIC<u32 body length><u32 crc32(body)>`` then the body: 36 ASCII bytes of event
id, 36 of partition key, then the JSON payload. ``MAGIC`` holds the bytes 0xFE 0xFF, which
never occur in UTF-8 (ids, keys and payloads are UTF-8 JSON), so after a damaged frame the
reader resynchronises on the next magic that starts a frame whose checksum holds; the
damaged bytes are handed to the caller (the spool moves them to ``spool.corrupt``).
Journals written before frames had a magic (``<u32 length><u32 crc>`` then the body) are
still read; damage in one of them cannot be resynchronised, so what follows it is set aside.

A write that the disk cuts short (disk full) is truncated back, so the next write starts a
whole frame; if even the truncation fails, the torn bytes stay and readers skip them as
damage. Either way the events of that write are not recorded and the caller gets a
``JournalWriteError`` (the recorder reports it), and later writes are read normally.

Ownership: the writing process holds ``flock(LOCK_EX)`` on its file for its lifetime (the
file is locked under a temporary name, then renamed, so nobody sees it unlocked). Any other
process that can take the lock knows the writer is gone and may recover the file
(``metatrail flush``, or the next process's relay). A forked child drops the parent's file
and opens its own.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from metatrail.schemas.files import open_private, private_dir
from metatrail.schemas.errors import TransportError

MAGIC = b"\xfe\xffMJ"
HEADER = struct.Struct("<4sII")
#: The frame header of journals written before frames had a magic.
LEGACY_HEADER = struct.Struct("<II")
ID_BYTES = 36
SUFFIX = ".log"
#: Frames decoded between two voluntary GIL releases (the relay runs beside user code).
YIELD_EVERY = 64
#: A journal fully moved into the outbox and larger than this is replaced by a new file.
ROTATE_BYTES = 4 << 20

Record = tuple[str, str, bytes]  # event id, key, payload
_COUNTER = itertools.count()


class JournalWriteError(TransportError):
    """Events could not be written to the journal (disk full, I/O error): they are not
    recorded. The journal stays readable and later writes are unaffected."""


def encode(records: Sequence[Record]) -> bytes:
    parts = []
    for event_id, key, payload in records:
        body = event_id.encode("ascii") + key.encode("ascii").ljust(ID_BYTES) + payload
        parts.append(HEADER.pack(MAGIC, len(body), zlib.crc32(body)))
        parts.append(body)
    return b"".join(parts)


class Decoded(NamedTuple):
    """What ``decode`` found: the records; the bytes consumed (whole frames and skipped
    damage); whether an incomplete frame stopped the scan before the end (more bytes may
    complete it); the damaged spans skipped, as (start, stop) offsets into the data."""

    records: list[Record]
    used: int
    torn: bool
    damaged: list[tuple[int, int]]


_OK, _SHORT, _BAD = 0, 1, 2


def _frame(data: bytes, view: memoryview, pos: int, end: int) -> tuple[int, int, int]:
    """(verdict, body start, body stop) of the frame at ``pos``: whole and intact, cut
    short by ``end``, or damaged."""
    if data.startswith(MAGIC, pos):
        start = pos + HEADER.size
        if start > end:
            return _SHORT, 0, 0
        _, length, crc = HEADER.unpack_from(data, pos)
    else:  # a frame of an older journal, or damage
        start = pos + LEGACY_HEADER.size
        if start > end:
            return _SHORT, 0, 0
        length, crc = LEGACY_HEADER.unpack_from(data, pos)
    stop = start + length
    if length < 2 * ID_BYTES:
        return _BAD, 0, 0
    if stop > end:
        return _SHORT, 0, 0
    if zlib.crc32(view[start:stop]) != crc:
        return _BAD, 0, 0
    return _OK, start, stop


def _next_frame(data: bytes, view: memoryview, pos: int, end: int) -> int | None:
    """The offset of the first whole, intact frame with a magic at or after ``pos``."""
    while True:
        found = data.find(MAGIC, pos, end)
        if found < 0:
            return None
        if _frame(data, view, found, end)[0] == _OK:
            return found
        pos = found + 1


def decode(data: bytes, limit: int | None = None, *, final: bool = False) -> Decoded:
    """Frames of ``data`` (at most ``limit``). A damaged or incomplete frame followed by an
    intact one is skipped as damage; one at the end is "torn" (``torn``, not consumed),
    unless ``final`` (nothing more will ever be written): then it is damage too."""
    records: list[Record] = []
    damaged: list[tuple[int, int]] = []
    pos = 0
    end = len(data)
    view = memoryview(data)  # checksums without copying the frame
    while pos < end:
        if limit is not None and len(records) >= limit:
            return Decoded(records, pos, False, damaged)
        if len(records) % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0)  # let the application thread have the GIL: keeps its p99 low
        verdict, start, stop = _frame(data, view, pos, end)
        if verdict == _OK:
            key_start = start + ID_BYTES
            payload_start = key_start + ID_BYTES
            try:
                records.append(
                    (
                        data[start:key_start].decode("ascii"),
                        data[key_start:payload_start].decode("ascii").rstrip(),
                        bytes(data[payload_start:stop]),
                    )
                )
                pos = stop
                continue
            except UnicodeDecodeError:  # a checksum that held by chance over damage
                pass
        resume = _next_frame(data, view, pos + 1, end)
        if resume is None:
            if not final:
                return Decoded(records, pos, True, damaged)
            resume = end
        damaged.append((pos, resume))
        pos = resume
    return Decoded(records, pos, False, damaged)


def frames_in(damage: bytes) -> int:
    """How many frames a damaged region held, by the magics in it (at least one)."""
    return max(1, damage.count(MAGIC))


class JournalWriter:
    """This process's journal. ``append`` is the hot path: one ``os.write``, no fsync."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self._fd: int | None = None
        self.path: Path | None = None
        self.offset = 0  # bytes written to the current file

    def _open(self) -> int:
        private_dir(self.directory)
        stem = f"{socket.gethostname()}-{os.getpid()}-{next(_COUNTER)}"
        tmp = self.directory / (stem + ".tmp")
        fd = open_private(tmp, os.O_WRONLY | os.O_APPEND | os.O_EXCL)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.directory / (stem + SUFFIX)
        os.rename(tmp, final)
        self._fd, self.path, self.offset = fd, final, 0
        return fd

    def append(self, records: Sequence[Record]) -> None:
        """Write ``records`` (one ``os.write`` when the disk takes it whole). Raises
        ``JournalWriteError`` when they could not all be written: none of them is recorded
        then, and the journal is left so that later writes are read (see module doc)."""
        data = encode(records)
        with self.lock:
            written = 0
            try:
                fd = self._fd if self._fd is not None else self._open()
                written = os.write(fd, data)
                while written < len(data):  # short write: the rest fails or goes on
                    more = os.write(fd, memoryview(data)[written:])
                    if more <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    written += more
            except OSError as exc:
                self._undo(written)
                raise JournalWriteError(
                    f"cannot write {len(records)} event(s) to the spool journal "
                    f"{self.path or self.directory}: {exc.strerror or exc}; not recorded"
                ) from exc
            self.offset += len(data)

    def _undo(self, written: int) -> None:
        """Take a partial write back (truncate to the last whole frame); when that fails
        too, count its bytes as written so that readers skip them as damage."""
        if not written or self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self.offset)
        except OSError:
            self.offset += written

    def rotate_if_done(self, ingested: int) -> Path | None:
        """Close and unlink the current file if all of it was ingested and it is large;
        returns the removed path (so the caller forgets its offset)."""
        with self.lock:
            if (
                self._fd is None
                or self.path is None
                or ingested < self.offset
                or self.offset < ROTATE_BYTES
            ):
                return None
            path = self.path
            os.unlink(path)
            os.close(self._fd)
            self._fd, self.path, self.offset = None, None, 0
            return path

    def close(self) -> None:
        """Release the file (it stays on disk; whoever takes its lock next recovers it)."""
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None

    def abandon_after_fork(self) -> None:
        """In a forked child: forget the parent's file without touching its lock."""
        if self._fd is not None:
            try:
                os.close(self._fd)  # the parent's descriptor keeps the lock
            except OSError:
                pass
        self._fd, self.path, self.offset = None, None, 0
        self.lock = threading.Lock()


#: Bytes read per ``limit`` frames asked for (grown until one whole frame fits): the relay
#: reads a batch, not the whole backlog behind it.
READ_BYTES_PER_FRAME = 2048


class Chunk(NamedTuple):
    """What ``read_from`` read: the records, the offset after them (and after skipped
    damage), whether an incomplete frame ends the range (see ``decode``), and the damaged
    bytes skipped, as (file offset, bytes)."""

    records: list[Record]
    offset: int
    torn: bool
    damaged: list[tuple[int, bytes]]


def read_from(
    path: Path,
    offset: int,
    limit: int | None = None,
    end: int | None = None,
    *,
    final: bool = False,
) -> Chunk:
    """Decode ``path`` from ``offset`` (up to byte ``end``, at most ``limit`` frames).
    ``final``: the file's writer is gone, so an incomplete frame at its end is damage."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        available = None if end is None else max(0, end - offset)
        chunk = None if limit is None else limit * READ_BYTES_PER_FRAME
        while True:
            if chunk is None:
                size = available
            else:
                size = chunk if available is None else min(chunk, available)
            data = fh.read() if size is None else fh.read(size)
            at_end = size is None or len(data) < size or size == available
            found = decode(data, limit, final=final and at_end)
            if found.records or found.damaged or at_end:
                # a frame cut off by the end of the chunk is not a torn tail
                return Chunk(
                    found.records,
                    offset + found.used,
                    found.torn and at_end,
                    [(offset + a, data[a:b]) for a, b in found.damaged],
                )
            chunk = 4 * (chunk or 1)  # one frame larger than the chunk: read more
            fh.seek(offset)


def orphans(directory: Path, own: Path | None) -> Iterator[tuple[Path, int]]:
    """Journals whose writer is gone: yields (path, fd holding the lock); the caller must
    close the fd after recovering the file."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        path = directory / name
        if own is not None and path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        yield path, fd
