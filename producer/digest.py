"""Content digests of local files and folders: sha256, streamed in 1 MiB chunks.

A folder's digest is the sha256 of its files' ``relative/path\\0<file digest>\\n`` lines
in sorted order, so it changes when any file's content, name or place changes. Hashing
happens in the caller's thread; pass ``digest=...`` to an ``Artifact`` to skip it.

The digest record. Each file's digest is recorded with the file's size, mtime and ctime
at the moment it was hashed: in memory for this process, and in the spool database's
``file_digests`` table (when a spool is open) so the next process does not hash a large
unchanged file again. A recorded digest is reused only while all three are unchanged
(ctime too, because ``os.utime`` can restore an overwritten file's mtime but not its
ctime) and the file had not changed in the last ``RACY_NS`` before it was hashed (a write
in the same clock tick as the hashing would leave size and times as they were, the "racy
git" problem); otherwise the file is hashed again. So ``digest_path`` always returns the
digest of the content on disk now, which the cache check relies on.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

CHUNK_BYTES = 1 << 20
PREFIX = "sha256:"
#: A digest is trusted only for a file whose last change (mtime or ctime) is at least this
#: much older than the hashing: coarse file-system clocks (a jiffy on Linux, 1-2 s on some
#: network and FAT file systems) cannot tell apart writes closer than that.
RACY_NS = 2_000_000_000

#: A file as it was when hashed: (absolute path, size, mtime_ns, ctime_ns).
Stat = tuple[str, int, int, int]
#: A digest record: (digest, when it was hashed in unix ns).
Recorded = tuple[str, int]
#: Stat -> record, for this process.
_MEMORY: dict[Stat, Recorded] = {}
_MEMORY_LIMIT = 100_000
_LOCK = threading.Lock()
#: Optional persistent record: get(stat) -> record | None, put(stat, record).
PersistentGet = Callable[[Stat], "Recorded | None"]
PersistentPut = Callable[[Stat, Recorded], None]
_persistent: tuple[PersistentGet, PersistentPut] | None = None


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a parent thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_persistent_cache(cache: tuple[PersistentGet, PersistentPut] | None) -> None:
    """Install (or remove) the cross-process digest record (the emitter installs the
    spool's ``file_digests`` table)."""
    global _persistent
    _persistent = cache


def local_path(uri: str) -> Path | None:
    """The local path a uri names, if it is one that exists (``file://`` or a bare path)."""
    if uri.startswith("file://"):
        path = uri[7:]
    elif "://" in uri:
        return None
    else:
        path = uri
    try:
        return Path(path) if os.path.exists(path) else None
    except (OSError, ValueError):
        return None


def digest_path(path: Path) -> str:
    """The digest of a file or folder (see module doc). Raises ``OSError`` if unreadable."""
    if path.is_dir():
        outer = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(root, name)
                rel = full.relative_to(path).as_posix()
                outer.update(f"{rel}\0{_file_digest(full)}\n".encode())
        return PREFIX + outer.hexdigest()
    return _file_digest(path)


def _trusted(stat: Stat, recorded: Recorded | None) -> str | None:
    """The recorded digest if it still holds for a file with ``stat`` (see module doc)."""
    if recorded is None:
        return None
    digest, hashed_at_ns = recorded
    return digest if max(stat[2], stat[3]) + RACY_NS <= hashed_at_ns else None


def _file_digest(path: Path) -> str:
    st = path.stat()
    stat: Stat = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _LOCK:
        found = _trusted(stat, _MEMORY.get(stat))
    if found is not None:
        return found
    persistent = _persistent
    if persistent is not None:
        recorded = persistent[0](stat)
        found = _trusted(stat, recorded)
        if found is not None:
            with _LOCK:
                _MEMORY[stat] = recorded  # type: ignore[assignment]  # not None: trusted
            return found
    hashed_at_ns = time.time_ns()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
    digest = PREFIX + h.hexdigest()
    after = path.stat()
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != stat[1:]:
        return digest  # written while being hashed: nothing worth recording
    with _LOCK:
        if len(_MEMORY) > _MEMORY_LIMIT:
            _MEMORY.clear()
        _MEMORY[stat] = (digest, hashed_at_ns)
    if persistent is not None:
        persistent[1](stat, (digest, hashed_at_ns))
    return digest
