"""Whether a RUNNING execution is still running: a call killed mid-flight (SIGKILL, a lost
machine) never sends its end, so the store would show it RUNNING forever.

An execution is *stale* when it is RUNNING and either its producer process is gone (it
was started on this host and that pid no longer runs, or runs a process started after
the execution began: the pid was reused), or no event about it (its own, its metrics) has
occurred for ``stale_after``. Stale executions are shown as such by ``ls``/``show`` and
closed by ``metatrail db reap`` (``metatrail.consumer.store.reap``) through events.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

#: The default of ``METATRAIL_EXECUTION_STALE_AFTER_S``.
DEFAULT_STALE_AFTER = timedelta(days=1)
#: Slack between a process's recorded start and its execution's start (clock ticks).
_START_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class Liveness:
    """What a verdict is judged against: this host, now, and the silence allowed."""

    stale_after: timedelta = DEFAULT_STALE_AFTER
    host: str = ""
    now: datetime | None = None

    @classmethod
    def here(cls, stale_after: timedelta = DEFAULT_STALE_AFTER) -> Liveness:
        """Judged from this host, now."""
        return cls(stale_after, socket.gethostname(), datetime.now(timezone.utc))

    def stale_reason(
        self,
        state: str,
        producer_host: str | None,
        producer_pid: int | None,
        started_at: datetime | None,
        last_event_at: datetime | None,
    ) -> str | None:
        """Why this execution is stale, or ``None`` when it is not (see the module doc)."""
        if state != "RUNNING":
            return None
        if producer_pid is not None and producer_host and producer_host == self.host:
            if not _process_runs(producer_pid, started_at):
                return f"its process {producer_pid} on {producer_host} is gone"
        if last_event_at is not None:
            silence = (self.now or datetime.now(timezone.utc)) - last_event_at
            if silence > self.stale_after:
                return f"no event for {_duration(silence)}"
        return None


def _process_runs(pid: int, started_at: datetime | None) -> bool:
    """Whether process ``pid`` exists here and was not started after ``started_at``."""
    if pid <= 0:
        return True  # not a process id we can judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (not ours to signal)
    began = _process_start(pid)
    return began is None or started_at is None or began <= started_at + _START_SLACK


def _process_start(pid: int) -> datetime | None:
    """When process ``pid`` started (Linux ``/proc``), or ``None`` when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, counted after the command name
    except (OSError, IndexError, ValueError):
        return None
    boot = _boot_time()
    if boot is None:
        return None
    return boot + timedelta(seconds=ticks / os.sysconf("SC_CLK_TCK"))


@lru_cache(maxsize=1)
def _boot_time() -> datetime | None:
    try:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return datetime.fromtimestamp(int(line.split()[1]), timezone.utc)
    except (OSError, ValueError):
        pass
    return None


def _duration(delta: timedelta) -> str:
    """``2d3h``, ``5h12m``, ``7m30s``, ``42s``."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
