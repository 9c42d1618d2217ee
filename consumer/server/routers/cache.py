"""``/cache/{fingerprint}``: the execution-cache lookup of ``@track(cache=True)`` and steps
for producers that talk to the server only (``METATRAIL_TRANSPORT=http``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import State, require
from metatrail.consumer.server.responses import JSONBody, json_body
from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.worker.lookup import cached_executions

router = APIRouter(dependencies=[Depends(require("read"))])
#: Candidates answered: the caller keeps the first whose local files exist.
CANDIDATES = 5


@router.get("/cache/{fingerprint}", response_model=hm.CacheLookupOut, summary="Cache lookup by fingerprint")
def cache_lookup(state: State, fingerprint: Annotated[str, Path(min_length=1, max_length=128)]) -> JSONBody:
    """COMPLETE executions with this fingerprint whose outputs are all LIVE, newest first
    (at most 5). The server cannot see the caller's files: the caller skips candidates
    whose local output files are gone."""
    with session_scope(state.engine, write=False) as session:
        found = cached_executions(session, fingerprint, candidates=CANDIDATES, check_files=False, limit=CANDIDATES)
    return json_body({"fingerprint": fingerprint, "candidates": [
        {"execution_id": c.execution_id, "return_shape": c.return_shape,
         "outputs": [{"artifact": a.to_json(), "role": role} for a, role in c.outputs]} for c in found]})
