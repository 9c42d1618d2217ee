"""The process-wide emitter: settings, spool, relay and transport, and their life cycle.

* Settings come only from ``metatrail.schemas.settings.load_settings`` (environment, then
  ``configure(**overrides)``). They are loaded on first use. A bad environment value is
  reported then, ONCE per process: a warning naming the variable and the value (nothing
  is recorded in the process), or, when ``METATRAIL_STRICT`` (read on its own) is set,
  the ``ConfigError`` raised by the first recording call and every one after it.
  ``configure`` raises it.
* ``emit_records(records)`` is the hot path: append events already serialized (by
  ``metatrail.producer.wire``) to the spool journal in one write, return; ``emit(events)`` serializes
  event models first. The relay thread starts on the first emit.
* ``flush(timeout_s)`` waits until everything spooled so far is delivered; when it returns
  ``False`` a warning says why (``metatrail.producer.outcome``).
* At exit, a flush bounded by ``exit_flush_timeout_s``, then a line on stderr for each
  thing left behind: events still spooled (and where), events set aside, events lost.
* Fork safety: the child forgets the parent's relay, connections, journal and locks, and
  opens its own lazily; the parent's spool is never touched through inherited handles, and
  a fork never lands inside a SQLite statement on the spool (``metatrail.producer.forkguard``).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metatrail.producer import digest, outcome
from metatrail.producer.build import record
from metatrail.producer.journal import Record
from metatrail.producer.relay import Relay
from metatrail.producer.spool import Spool
from metatrail.producer.transports import make_transport
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.parse import parse_event
from metatrail.schemas.settings import Settings, load_settings, load_strict

log = logging.getLogger("metatrail.producer")

#: Errors of one kind logged in full before they are only counted.
LOG_FIRST_ERRORS = 5


class Emitter:
    """Owns one spool, its relay and transport, for one ``Settings``."""

    def __init__(self, settings: Settings, *, journal: bool = True) -> None:
        settings = _anchored(settings)
        self.settings = settings
        self.strict = settings.strict
        self.use_journal = journal
        self._lock = threading.Lock()
        self._spool: Spool | None = None
        self._relay: Relay | None = None
        self._tally = outcome.Tally()  # what the previous flush accounted for

    @property
    def spool(self) -> Spool:
        spool = self._spool
        if spool is None:
            with self._lock:
                if self._spool is None:
                    s = self.settings
                    self._spool = Spool(
                        s.spool_path, max_bytes=s.spool_max_bytes, full_policy=s.spool_full_policy
                    )
                    digest.set_persistent_cache((self._spool.digest_get, self._spool.digest_put))
                spool = self._spool
        return spool

    def relay(self) -> Relay:
        relay = self._relay
        if relay is None:
            with self._lock:
                if self._relay is None:
                    s = self.settings
                    self._relay = Relay(
                        self.spool,
                        make_transport(s),
                        batch_size=s.relay_batch_size,
                        interval_s=s.relay_interval_ms / 1000,
                    )
                    self._relay.start()
                relay = self._relay
        return relay

    def emit(self, events: Sequence[Any]) -> None:
        """Spool event models durably; raises on failure (the recorder decides what to do)."""
        self.emit_records([record(e) for e in events])

    def emit_records(self, records: list[Record]) -> None:
        """Spool serialized events (``metatrail.producer.wire``) durably, with ONE journal write;
        raises on failure. In strict mode every payload is validated first."""
        if self.strict:
            for _, _, payload in records:
                parse_event(payload)
        if self.use_journal:
            self.spool.append(records)
        else:
            self.spool.append_direct(records)
        if self._relay is None:
            self.relay()

    def flush(self, timeout_s: float) -> bool:
        if self._spool is None:
            return True
        relay = self.relay()
        idle = relay.wait_idle(timeout_s)
        before, self._tally = self._tally, outcome.flushed(
            self._spool, relay, idle, timeout_s, self._tally
        )
        return idle and self._tally == before

    def close(self, timeout_s: float) -> bool:
        """Flush (bounded), stop the relay, close the transport and the spool."""
        ok = self.flush(timeout_s)
        relay = self._relay
        if relay is not None:
            relay.stop(timeout_s)
            relay.transport.close(timeout_s)
        if self._spool is not None:
            self._spool.close()
        return ok

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        _ABANDONED.append(self._relay)  # its thread does not exist here; never close it
        self._relay = None
        if self._spool is not None:
            self._spool.abandon_after_fork()


def _anchored(settings: Settings) -> Settings:
    """Relative local paths (spool, JSONL file, SQLite store) resolved against the working
    directory NOW, so a later ``chdir`` does not move where this emitter writes."""
    update: dict[str, Any] = {
        "spool_path": settings.spool_path.absolute(),
        "file_path": settings.file_path.absolute(),
    }
    url = settings.store_url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        update["store_url"] = prefix + str(Path(url[len(prefix) :]).absolute())
    return settings.model_copy(update=update)


_ABANDONED: list[Any] = []
_LOCK = threading.Lock()
#: The emitter in use (None before first use and after ``shutdown``). Hot paths read it
#: directly (no call); only ``get``, ``configure`` and ``shutdown`` set it.
current: Emitter | None = None
_config_error: MetatrailError | None = None
#: ``METATRAIL_STRICT`` read on its own (None: not read yet), for when settings are bad.
_strict_env: bool | None = None
_error_counts: dict[str, int] = {}


def get() -> Emitter:
    """The current emitter, created from the environment on first use. Raises the
    environment's ``ConfigError`` (the same object every time; warned about once)."""
    global current, _config_error
    em = current
    if em is not None:
        return em
    with _LOCK:
        if current is None:
            if _config_error is not None:
                raise _config_error
            try:
                current = Emitter(load_settings())
            except MetatrailError as exc:
                _config_error = exc
                if not is_strict():
                    log.warning(
                        "metatrail: %s; nothing is recorded in this process "
                        "(METATRAIL_STRICT=1 raises this error instead)",
                        exc,
                    )
                raise
        return current


def emit(events: Sequence[Any]) -> None:
    em = current
    (em if em is not None else get()).emit(events)


def emit_records(records: list[Record]) -> None:
    em = current
    (em if em is not None else get()).emit_records(records)


def is_strict() -> bool:
    """Whether recording errors are raised: the emitter's setting, or, while there is no
    emitter (bad settings), ``METATRAIL_STRICT`` read on its own."""
    global _strict_env
    em = current
    if em is not None:
        return em.strict
    strict = _strict_env
    if strict is None:
        try:
            strict = load_strict()
        except MetatrailError:
            strict = False  # a bad METATRAIL_STRICT is the settings error warned about
        _strict_env = strict
    return strict


def settings() -> Settings:
    return get().settings


def report(what: str, exc: BaseException) -> None:
    """A recording call failed: raise ``exc`` in strict mode, else log it (``note_error``).
    Every recording entry point ends its ``except`` with this, so user code never sees a
    recording error unless it asked to."""
    if is_strict():
        raise exc
    note_error(what, exc)


def note_error(what: str, exc: BaseException) -> None:
    """Log a recording error: the first few of each kind in full, then every 1000th. The
    settings error is not repeated (``get`` warned about it once)."""
    if exc is _config_error:
        return
    key = f"{what}:{type(exc).__name__}"
    count = _error_counts.get(key, 0) + 1
    _error_counts[key] = count
    if count <= LOG_FIRST_ERRORS or count % 1000 == 0:
        log.error(
            "metatrail: %s failed (not recorded; occurrence %d): %s: %s",
            what,
            count,
            type(exc).__name__,
            exc,
        )


def configure(**overrides: Any) -> Settings:
    """Load settings (environment + ``overrides``) and rebuild the emitter. Raises
    ``ConfigError`` naming the bad variable. Events spooled before stay in their spool and
    are delivered by the new emitter's relay when the spool path is the same."""
    global current, _config_error, _strict_env
    new_settings = load_settings(**overrides)
    with _LOCK:
        old, current, _config_error = current, Emitter(new_settings), None
        _strict_env = None
    if old is not None:
        old.close(min(1.0, old.settings.exit_flush_timeout_s))
    return new_settings


def shutdown(timeout_s: float = 5.0) -> bool:
    """Flush (bounded), stop the relay and forget the emitter; the next emit starts a new
    one from the environment. Returns whether everything was delivered."""
    global current, _config_error, _strict_env
    with _LOCK:
        old, current, _config_error, _strict_env = current, None, None, None
    return True if old is None else old.close(timeout_s)


def flush(timeout_s: float = 30.0) -> bool:
    """Wait until every event emitted so far (in this process) is delivered; ``False`` if
    ``timeout_s`` passed first. Never raises."""
    try:
        em = current
        return True if em is None else em.flush(timeout_s)
    except Exception as exc:
        note_error("flush", exc)
        return False


def _exit_flush() -> None:
    em = current
    if em is None or em._spool is None:
        return
    try:
        timeout_s = em.settings.exit_flush_timeout_s
        relay = em.relay()
        idle = relay.wait_idle(timeout_s)
        for line in outcome.exit_lines(em.spool, relay, timeout_s, idle):
            sys.stderr.write(line + "\n")
        if em._relay is not None:
            em._relay.stop(0.5)
            em._relay.transport.close(1.0)
        em.spool.close()
    except Exception as exc:  # never fail the interpreter's exit
        sys.stderr.write(f"metatrail: exit flush failed: {exc}\n")


def _after_fork_in_child() -> None:
    """The child forgets this module's lock and the parent's relay and handles (each module
    resets its own state in its own at-fork hook)."""
    global _LOCK
    _LOCK = threading.Lock()
    em = current
    if em is not None:
        em.after_fork_in_child()


atexit.register(_exit_flush)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
