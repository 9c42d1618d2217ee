"""The ``file`` transport: JSONL appended to ``METATRAIL_FILE_PATH``.

For debugging and for ``metatrail ingest``. Each batch is written with one ``write`` and
fsynced before the relay deletes it from the spool.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise TransientTransportError(f"cannot append to {self.path}: {exc}") from exc

    def close(self, timeout_s: float) -> bool:
        return True
