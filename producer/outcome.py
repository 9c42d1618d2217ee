"""What ``flush()`` and the exit hook say: the truth about what was and was not delivered.

Besides events still waiting (a broker or store unreachable: a later run or
``metatrail flush`` delivers them), three things keep an event from the store, and each is
said out loud, never only logged at debug level:

* ``lost``: the spool's disk refused the write (disk full): the event was not recorded;
* ``set_aside``: the transport refused the event for what it is (a Kafka broker refusing
  it as too large): it sits in the spool's dead-letter file;
* ``damaged``: journal bytes that no longer decode were moved to ``spool.corrupt``.

``flush()`` returns ``False`` when any of them happened since the previous ``flush()``,
or when events are still waiting, and logs one warning saying which and why.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from metatrail.producer import setaside
from metatrail.producer.relay import Relay
from metatrail.producer.spool import Spool

log = logging.getLogger("metatrail.producer")


class Tally(NamedTuple):
    """Running totals of one emitter's spool and relay."""

    lost: int = 0
    set_aside: int = 0
    damaged: int = 0


def tally(spool: Spool, relay: Relay) -> Tally:
    return Tally(spool.lost, relay.set_aside, spool.damaged)


def _pending(spool: Spool) -> str:
    try:
        return str(spool.pending())
    except Exception as exc:  # the spool itself is unreadable: say so
        return f"an unknown number of (spool unreadable: {exc})"


def flushed(spool: Spool, relay: Relay, idle: bool, timeout_s: float, since: Tally) -> Tally:
    """Warn about what kept events from being delivered since ``since``; returns the new
    totals. Whether the flush succeeded is ``idle and tally == since``."""
    now = tally(spool, relay)
    reasons = []
    if now.lost > since.lost:
        reasons.append(
            f"{now.lost - since.lost} event(s) could not be written to the spool and were not "
            f"recorded ({spool.lost_reason})"
        )
    if now.set_aside > since.set_aside:
        reasons.append(
            f"{now.set_aside - since.set_aside} event(s) were refused and set aside in "
            f"{relay.dead_letter_path} ({relay.set_aside_reason})"
        )
    if now.damaged > since.damaged:
        reasons.append(
            f"{now.damaged - since.damaged} damaged journal region(s) were moved to "
            f"{setaside.corrupt_path(spool.path)}"
        )
    if not idle:
        why = f": {relay.last_error}" if relay.last_error is not None else ""
        reasons.append(
            f"{_pending(spool)} event(s) not delivered yet after {timeout_s:g}s{why} (they stay "
            f"in {spool.path})"
        )
    if reasons:
        log.warning("metatrail: flush: %s", "; ".join(reasons))
    return now


def exit_lines(spool: Spool, relay: Relay | None, timeout_s: float, idle: bool) -> list[str]:
    """The lines the exit hook writes on stderr (none when everything was delivered)."""
    lines = []
    if not idle:
        remaining = spool.pending()
        if remaining:
            why = ""
            if relay is not None and relay.last_error is not None:
                why = f" ({relay.last_error})"
            lines.append(
                f"metatrail: {remaining} events remain spooled in {spool.path} after "
                f"{timeout_s:g}s{why}; the next run or `metatrail flush` delivers them"
            )
    if relay is not None and relay.set_aside:
        lines.append(
            f"metatrail: {relay.delivered} events delivered; {relay.set_aside} refused "
            f"({relay.set_aside_reason}) and set aside in {relay.dead_letter_path}: they will "
            "not be delivered"
        )
    if spool.lost:
        lines.append(
            f"metatrail: {spool.lost} events could not be written to the spool and were not "
            f"recorded ({spool.lost_reason})"
        )
    if spool.damaged:
        lines.append(
            f"metatrail: {spool.damaged} damaged journal region(s) ({spool.damaged_bytes} bytes) "
            f"were moved to {setaside.corrupt_path(spool.path)}"
        )
    return lines
