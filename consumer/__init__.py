"""metatrail's service side: apply events to the lineage store, query it, drive steps."""

from metatrail.consumer.query.store import Store  # noqa: E402,F401  (the read API: Store.open(url))
