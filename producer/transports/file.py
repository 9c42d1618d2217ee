"""The ``file`` transport: JSONL appended to ``METATRAIL_FILE_PATH``.

For debugging and for ``metatrail ingest``. Each batch is written with one ``write`` and
fsynced before the relay deletes it from the spool. The file is created 0600 (its folder
0700), like every file holding recorded data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from metatrail.schemas.files import open_private
from metatrail.producer.transports.base import SpooledEvent
from metatrail.schemas.errors import TransientTransportError


class FileTransport:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, batch: Sequence[SpooledEvent]) -> None:
        if not batch:
            return
        data = b"".join(e.payload + b"\n" for e in batch)
        try:
            fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise TransientTransportError(f"cannot append to {self.path}: {exc}") from exc
        start = -1
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            if start >= 0:
                try:
                    os.ftruncate(fd, start)  # no half line before the next batch
                except OSError:
                    pass
            raise TransientTransportError(f"cannot append to {self.path}: {exc}") from exc
        finally:
            os.close(fd)

    def close(self, timeout_s: float) -> bool:
        return True
