"""``/``: what a team checks first: recent runs and pipelines, failures, dead letters and
the consumer's lag."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from metatrail.consumer.service.replay import list_dead_letters
from metatrail.consumer.service.status import group_status, store_status
from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View

#: Rows of each list on the home page.
RECENT = 10


def _iso(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}


def home(view: View) -> dict[str, Any]:
    store, state = view.store, view.state
    runs = store.find("context", "type = 'Run'", order_by="-created_at", limit=RECENT).items
    pipelines = store.find("context", "type = 'Pipeline'", order_by="-created_at", limit=RECENT).items
    failures = store.find("execution", "state = 'FAILED'", order_by="-created_at", limit=RECENT).items
    letters = [_iso(asdict(x)) for x in list_dead_letters(state.engine, limit=RECENT)]
    status = store_status(state.engine)
    lag = None
    if state.settings.kafka_bootstrap:
        group = group_status(state.settings)
        lag = {**_iso(asdict(group)), "partitions": [asdict(p) for p in group.partitions]}
    nodes = [*runs, *pipelines, *failures]
    return {
        "title": "metatrail",
        "runs": [r.to_json() for r in runs],
        "pipelines": [p.to_json() for p in pipelines],
        "failures": [f.to_json() for f in failures],
        "dead_letters": {"total": status.dead_letters, "pending": status.dead_letters_pending, "recent": letters},
        "store": {"dialect": state.engine.dialect.name, "last_event_kind": status.last_event_kind,
                  "last_applied_at": status.last_applied_at.isoformat() if status.last_applied_at else None,
                  "error": status.error},
        "consumer": lag,
        "api": getattr(view.request.app.state, "ui_api_info", {}),
        "short": short_ids(store, [n.id for n in nodes]),
    }


PAGES = [("/", "home.html", home)]
