"""What an execution is linked to: its INPUT / OUTPUT edges and its contexts, for many
executions at once (what exporting the graph to another format needs)."""

from __future__ import annotations

from collections.abc import Sequence

from metatrail.consumer.query.domain import ExecutionLinks
from metatrail.consumer.query.raw import CHUNK, Raw
from metatrail.consumer.store.batching import chunks


def execution_links(raw: Raw, ids: Sequence[str]) -> dict[str, ExecutionLinks]:
    """execution id -> its links, for every id given (an execution without edges or
    contexts gets empty ones). Edges and contexts are sorted, so the result is stable."""
    edges: dict[str, list[tuple[str, str, str]]] = {i: [] for i in ids}
    contexts: dict[str, list[str]] = {i: [] for i in ids}
    for part in chunks(list(dict.fromkeys(ids)), CHUNK):
        test, args = raw.one_of(part)
        for xid, direction, aid, role in raw.rows(
            f"SELECT execution_id, direction, artifact_id, role FROM mt_edges WHERE execution_id {test}", args
        ):
            edges[xid].append((direction, aid, role))
        for xid, cid in raw.rows(
            f"SELECT execution_id, context_id FROM mt_associations WHERE execution_id {test}", args
        ):
            contexts[xid].append(cid)
    return {
        xid: ExecutionLinks(
            execution_id=xid,
            inputs=tuple(sorted((a, r) for d, a, r in edges[xid] if d == "INPUT")),
            outputs=tuple(sorted((a, r) for d, a, r in edges[xid] if d == "OUTPUT")),
            context_ids=tuple(sorted(contexts[xid])),
        )
        for xid in ids
    }
