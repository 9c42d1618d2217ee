"""Content digests of local files and folders: sha256, streamed in 1 MiB chunks.

A folder's digest is the sha256 of its files' ``relative/path\\0<file digest>\\n`` lines
in sorted order, so it changes when any file's content, name or place changes. Digests are
cached by ``(absolute path, mtime_ns, size)``: in memory for this process, and in the
spool database's ``digest_cache`` table (when a spool is open) so the next process does not
hash a large unchanged file again. Hashing happens in the caller's thread; pass
``digest=...`` to an ``Artifact`` to skip it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

CHUNK_BYTES = 1 << 20
PREFIX = "sha256:"

#: (path, mtime_ns, size) -> digest, for this process.
_MEMORY: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()
#: Optional persistent cache: get(key) -> digest | None, put(key, digest).
PersistentGet = Callable[[tuple[str, int, int]], "str | None"]
PersistentPut = Callable[[tuple[str, int, int], str], None]
_persistent: tuple[PersistentGet, PersistentPut] | None = None


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a parent thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_persistent_cache(cache: tuple[PersistentGet, PersistentPut] | None) -> None:
    """Install (or remove) the cross-process cache (the emitter installs the spool's)."""
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


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _LOCK:
        found = _MEMORY.get(key)
    if found is not None:
        return found
    persistent = _persistent
    if persistent is not None:
        found = persistent[0](key)
        if found is not None:
            with _LOCK:
                _MEMORY[key] = found
            return found
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
    digest = PREFIX + h.hexdigest()
    with _LOCK:
        _MEMORY[key] = digest
    if persistent is not None:
        persistent[1](key, digest)
    return digest
