"""The spool's append-only journal: how an event becomes durable in ~2 µs.

A SQLite commit costs ~20 µs here even in WAL mode with ``synchronous=NORMAL``, and a
tracked call needs two of them (start, end), which alone would exceed the overhead target.
So the hot path appends each call's events with ONE ``os.write`` to a per-process journal
file (``<spool>.journal/<host>-<pid>-<n>.log``); the relay thread moves them into the
SQLite outbox in batches (one transaction, which also stores how far the journal was read),
then sends them. Durability is the same as SQLite WAL with ``synchronous=NORMAL``: a killed
process loses nothing (the data is in the OS page cache), a power cut may lose the tail.

Frames: ``<u32 body length><u32 crc32(body)>`` then the body: 36 ASCII bytes of event id,
36 of partition key, then the JSON payload. A torn or corrupt tail (power loss) is detected
and skipped with a warning.

Ownership: the writing process holds ``flock(LOCK_EX)`` on its file for its lifetime (the
file is locked under a temporary name, then renamed, so nobody sees it unlocked). Any other
process that can take the lock knows the writer is gone and may recover the file
(``metatrail flush``, or the next process's relay). A forked child drops the parent's file
and opens its own.
"""

from __future__ import annotations

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

HEADER = struct.Struct("<II")
ID_BYTES = 36
SUFFIX = ".log"
#: Frames decoded between two voluntary GIL releases (the relay runs beside user code).
YIELD_EVERY = 64
#: A journal fully moved into the outbox and larger than this is replaced by a new file.
ROTATE_BYTES = 4 << 20

Record = tuple[str, str, bytes]  # event id, key, payload
_COUNTER = itertools.count()


def encode(records: Sequence[Record]) -> bytes:
    parts = []
    for event_id, key, payload in records:
        body = event_id.encode("ascii") + key.encode("ascii").ljust(ID_BYTES) + payload
        parts.append(HEADER.pack(len(body), zlib.crc32(body)))
        parts.append(body)
    return b"".join(parts)


def decode(data: bytes, limit: int | None = None) -> tuple[list[Record], int, bool]:
    """Frames of ``data`` (at most ``limit``): (records, bytes consumed by whole frames,
    whether a torn or corrupt frame stopped the scan before the end)."""
    records: list[Record] = []
    pos = 0
    end = len(data)
    view = memoryview(data)  # checksums without copying the frame
    while pos + HEADER.size <= end:
        if limit is not None and len(records) >= limit:
            return records, pos, False
        if len(records) % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0)  # let the application thread have the GIL: keeps its p99 low
        length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        stop = start + length
        if stop > end:
            return records, pos, True
        if length < 2 * ID_BYTES or zlib.crc32(view[start:stop]) != crc:
            return records, pos, True
        key_start = start + ID_BYTES
        payload_start = key_start + ID_BYTES
        records.append(
            (
                data[start:key_start].decode("ascii"),
                data[key_start:payload_start].decode("ascii").rstrip(),
                bytes(data[payload_start:stop]),
            )
        )
        pos = stop
    return records, pos, pos != end


class JournalWriter:
    """This process's journal. ``append`` is the hot path: one ``os.write``, no fsync."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self._fd: int | None = None
        self.path: Path | None = None
        self.offset = 0  # bytes written to the current file

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"{socket.gethostname()}-{os.getpid()}-{next(_COUNTER)}"
        tmp = self.directory / (stem + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.directory / (stem + SUFFIX)
        os.rename(tmp, final)
        self._fd, self.path, self.offset = fd, final, 0
        return fd

    def append(self, records: Sequence[Record]) -> None:
        data = encode(records)
        with self.lock:
            fd = self._fd if self._fd is not None else self._open()
            os.write(fd, data)
            self.offset += len(data)

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


def read_from(
    path: Path, offset: int, limit: int | None = None, end: int | None = None
) -> tuple[list[Record], int, bool]:
    """Decode ``path`` from ``offset`` (up to byte ``end``, at most ``limit`` frames):
    (records, new offset, torn tail?)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        available = None if end is None else max(0, end - offset)
        if limit is None:
            data = fh.read() if available is None else fh.read(available)
            records, used, torn = decode(data)
            return records, offset + used, torn
        chunk = limit * READ_BYTES_PER_FRAME
        while True:
            size = chunk if available is None else min(chunk, available)
            data = fh.read(size)
            records, used, torn = decode(data, limit)
            at_end = len(data) < size or size == available
            if records or at_end:
                # a frame cut off by the end of the chunk is not a torn tail
                return records, offset + used, torn and at_end
            chunk *= 4  # one frame larger than the chunk: read more
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
