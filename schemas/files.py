"""Private files: everything metatrail writes that holds recorded data is created 0600, in
folders it creates 0700.

Recorded events carry parameters, properties and error messages, which may be sensitive
even after redaction (``metatrail.producer.redact``). So the spool (``spool.db``, its WAL
and shared-memory files, the journals), the local store (``metadata.db``), the ``file``
transport's JSONL, the spool's set-aside files (``spool.deadletters.jsonl``,
``spool.corrupt``) are readable by their owner only. SQLite creates a database's ``-wal``
and ``-shm`` files with the mode of the database file, so creating the database file
first, 0600, covers them.

Only what metatrail creates is restricted: an existing file or folder keeps its mode (a
team may share a store on purpose). The process's umask is never changed (it is global).
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (existing ones are left as
    they are). Raises ``OSError`` when it cannot."""
    path = Path(path)
    if path.is_dir():
        return
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)  # the umask can only take bits away
        except FileExistsError:
            continue


def private_file(path: Path) -> None:
    """Make sure ``path`` exists, creating it empty with mode 0600 (and its folder 0700)
    when it does not. An existing file is not touched. Raises ``OSError`` when it cannot."""
    path = Path(path)
    if path.exists():
        return
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` creating the file 0600 (and its folder 0700)."""
    path = Path(path)
    private_dir(path.parent)
    return os.open(path, flags | os.O_CREAT, FILE_MODE)
