"""One side of a diff: what a target was made from, as a tree, and what looked at it.

The upstream lineage comes from the one walker (:func:`lineage_graph`). From it a *tree of
record* is kept: each artifact's producer is the execution that made it as of the target
(an artifact re-output later by a cache hit has two producers; the newest one recorded no
later than the target is the one of record, else the oldest). Every execution in the tree
gets a place: its depth in steps from the target and a key naming the path (``Trainer``,
``Trainer<examples<ExampleGen``).

Two kinds of step are added next to the tree, because they explain a model without
feeding it: *consumers*, the steps that read the target artifact (evaluation, push
decision), and *observers*, steps that read data of the lineage without feeding the target
(statistics, validation). An execution is an observer of a side when it reads an artifact of
that side the other side lacks, and each other artifact it reads belongs to the side or
existed before the side's target: so day 2's validator, which compares day 2's statistics
with day 1's, belongs to day 2's side and not to day 1's. Observers of observers are found
the same way, for up to ``OBSERVER_ROUNDS`` hops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from metatrail.consumer.query.domain import Artifact, Context, Execution, LineageGraph
from metatrail.consumer.query.lineage import lineage_graph
from metatrail.consumer.query.raw import CHUNK, Raw, load_graph_nodes
from metatrail.consumer.store.batching import chunks
from metatrail.schemas.errors import FilterError

#: Hops of observers of observers (statistics -> validation -> ...).
OBSERVER_ROUNDS = 3
#: Most executions of a run context a diff walks from.
MAX_RUN_EXECUTIONS = 200
#: Most known executions a reader query leaves out in SQL (the rest are dropped after).
MAX_SKIP = 400

Target = Artifact | Execution | Context


@dataclass
class Place:
    """Where an execution sits on its side: steps from the target, the key of its path,
    and the kind of step (lineage, observer, consumer)."""

    depth: int
    key: str
    kind: str


@dataclass
class Side:
    """Everything one side of a diff knows. Ids are full ids; ``inputs``/``outputs`` list
    (role, artifact id) per execution, ``readers`` (role, execution id) per artifact for
    observers and consumers only."""

    target: Target
    #: where the tree starts: the target's producer, the target execution, a run's last steps.
    roots: list[str]
    #: the executions whose metrics are the target's: the target execution, a run's executions.
    members: list[str] = field(default_factory=list)
    nodes: dict[str, Artifact | Execution] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    outputs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    readers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    #: key of the place of each artifact in scope (its producer's, or reader's + role).
    artifact_keys: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: the execution each tree execution feeds, with the role and artifact: for the chain.
    feeds: dict[str, tuple[str, str]] = field(default_factory=dict)
    walked: set[str] = field(default_factory=set)
    scope: set[str] = field(default_factory=set)
    pipelines: list[str] = field(default_factory=list)
    reference_time: datetime | None = None
    truncated: bool = False
    #: artifacts whose readers were looked up; readers waiting to belong (anchor, role).
    looked_at: set[str] = field(default_factory=set)
    pending: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def execution(self, execution_id: str) -> Execution:
        node = self.nodes.get(execution_id)
        if isinstance(node, Execution):
            return node
        return Execution(execution_id, None, None, "UNKNOWN", is_placeholder=True)

    def artifact(self, artifact_id: str) -> Artifact:
        node = self.nodes.get(artifact_id)
        if isinstance(node, Artifact):
            return node
        return Artifact(artifact_id, None, None, None, "UNKNOWN", is_placeholder=True)


def build_side(raw: Raw, target: Target, max_hops: int, limit: int) -> Side:
    """The lineage tree of record and the pipelines of ``target`` (consumers and observers
    need both sides: :func:`add_neighbours`). Raises ``FilterError`` for a run with more
    than ``MAX_RUN_EXECUTIONS`` executions."""
    side = Side(target=target, roots=[])
    if isinstance(target, Context):
        side.members = _run_members(raw, side, target)
        starts = _terminal(side, side.members)
    else:
        starts = [target.id]
    graphs = [lineage_graph(raw, s, "upstream", max_hops, None, limit) for s in starts]
    _absorb(side, graphs)
    producers = _producer_edges(graphs)
    if isinstance(target, Artifact):
        side.reference_time = target.created_at
        side.scope.add(target.id)
        made_by = producers.get(target.id)
        side.roots = [_of_record(side, made_by)] if made_by else []
    else:
        side.roots = [s for s in starts if isinstance(side.nodes.get(s), Execution)]
        if isinstance(target, Execution):
            side.members = list(side.roots)
            # The walk upstream of an execution keeps its inputs only: read its outputs too.
            _load_steps(raw, side, side.roots)
        times = [t for t in (side.execution(m).created_at for m in side.members) if t is not None]
        side.reference_time = target.created_at if isinstance(target, Execution) else max(times, default=None)
    _tree(side, graphs, producers)
    side.pipelines = _pipelines(raw, target, side.roots)
    return side


def _run_members(raw: Raw, side: Side, run: Context) -> list[str]:
    """The executions of a run, with their edges loaded. Raises ``FilterError`` above
    ``MAX_RUN_EXECUTIONS``."""
    members = sorted(r[0] for r in raw.rows("SELECT execution_id FROM mt_associations WHERE context_id = ?",
                                             (run.id,)))
    if len(members) > MAX_RUN_EXECUTIONS:
        raise FilterError(f"diff: run {run.name or run.id} has {len(members)} executions; "
                          f"at most {MAX_RUN_EXECUTIONS} can be compared (diff two of its models instead)")
    _load_steps(raw, side, members)
    return [m for m in members if m in side.nodes]


def _terminal(side: Side, members: Sequence[str]) -> list[str]:
    """The run's last steps: those whose outputs no other step of the run reads (so that
    depth counts steps back from the end of the run). All of them when none is last."""
    read = {art for m in members for _, art in side.inputs.get(m, ())}
    last = [m for m in members if not any(art in read for _, art in side.outputs.get(m, ()))]
    return last or list(members)


def _absorb(side: Side, graphs: Sequence[LineageGraph]) -> None:
    for g in graphs:
        side.truncated = side.truncated or g.truncated
        for n in g.nodes:
            side.nodes.setdefault(n.id, n)
            side.walked.add(n.id)


def _producer_edges(graphs: Sequence[LineageGraph]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for g in graphs:
        for e in g.edges:
            if e.kind == "output":
                out.setdefault(e.target, set()).add(e.source)
    return {k: sorted(v) for k, v in out.items()}


def _of_record(side: Side, producers: Sequence[str]) -> str:
    """The producer of record among several: the newest recorded no later than the side's
    target, else the oldest (ties by id)."""
    def when(x: str) -> tuple[datetime | None, str]:
        return side.execution(x).created_at, x

    known = sorted((p for p in producers if side.execution(p).created_at is not None), key=when)
    if side.reference_time is not None:
        before = [p for p in known if when(p)[0] <= side.reference_time]  # type: ignore[operator]
        if before:
            return before[-1]
    return known[0] if known else sorted(producers)[0]


def _tree(side: Side, graphs: Sequence[LineageGraph], producers: dict[str, list[str]]) -> None:
    """Breadth-first from the roots over producers of record: places, inputs, outputs."""
    inputs: dict[str, set[tuple[str, str]]] = {}
    outputs: dict[str, set[tuple[str, str]]] = {}
    for g in graphs:
        for e in g.edges:
            if e.kind == "input":
                inputs.setdefault(e.target, set()).add((e.role, e.source))
            else:
                outputs.setdefault(e.source, set()).add((e.role, e.target))
    queue: deque[str] = deque()
    for root in side.roots:
        side.places[root] = Place(1, _label(side.execution(root)), "lineage")
        queue.append(root)
    while queue:
        ex = queue.popleft()
        place = side.places[ex]
        side.inputs[ex] = sorted(inputs.get(ex, set()) | set(side.inputs.get(ex, ())))
        side.outputs[ex] = sorted(outputs.get(ex, set()) | set(side.outputs.get(ex, ())))
        side.scope.update(a for _, a in side.outputs[ex])
        for role, art in side.inputs[ex]:
            side.scope.add(art)
            made_by = producers.get(art)
            if not made_by:
                side.artifact_keys.setdefault(art, (place.depth + 1, f"{place.key}<{role}"))
                continue
            prod = side.producer.setdefault(art, _of_record(side, made_by))
            if prod in side.places:
                continue
            key = f"{place.key}<{role}<{_label(side.execution(prod))}"
            side.places[prod] = Place(place.depth + 1, key, "lineage")
            side.feeds[prod] = (ex, art)
            queue.append(prod)
    for ex, place in side.places.items():
        for _, art in side.outputs.get(ex, ()):
            side.producer.setdefault(art, ex)
            side.artifact_keys.setdefault(art, (place.depth, place.key))
    if isinstance(side.target, Artifact):
        side.artifact_keys[side.target.id] = (0, "")


def _label(node: Execution) -> str:
    return node.type or node.name or "?"


def _pipelines(raw: Raw, target: Target, roots: Sequence[str]) -> list[str]:
    """Pipelines the target or its root executions belong to."""
    contexts: set[str] = set()
    if isinstance(target, Context):
        contexts.add(target.id)
    elif isinstance(target, Artifact):
        contexts.update(r[0] for r in raw.rows("SELECT context_id FROM mt_attributions WHERE artifact_id = ?",
                                                (target.id,)))
    for part in chunks(list(roots), CHUNK):
        test, args = raw.one_of(part)
        contexts.update(r[0] for r in raw.rows(f"SELECT context_id FROM mt_associations WHERE execution_id {test}", args))
    return pipeline_names(raw, contexts)


def pipeline_names(raw: Raw, context_ids: Iterable[str]) -> list[str]:
    """Names of the pipeline contexts (type ``Pipeline``, any case or namespace) among
    these contexts and their parents (a run's pipeline)."""
    ids = sorted(set(context_ids))
    if not ids:
        return []
    found = set(ids)
    names: set[str] = set()
    for part in chunks(ids, CHUNK):
        test, args = raw.one_of(part)
        found.update(r[0] for r in raw.rows(f"SELECT parent_id FROM mt_parent_contexts WHERE context_id {test}", args))
    for part in chunks(sorted(found), CHUNK):
        test, args = raw.one_of(part)
        names.update(name for type_, name in raw.rows(f"SELECT type, name FROM mt_contexts WHERE id {test}", args)
                     if name and _is_pipeline(type_))
    return sorted(names)


def _is_pipeline(type_: str | None) -> bool:
    return bool(type_) and type_.lower().rsplit(".", 1)[-1] == "pipeline"  # type: ignore[union-attr]


def _reader_edges(raw: Raw, artifact_ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """(execution id, artifact id, role) of every INPUT edge from these artifacts."""
    out: list[tuple[str, str, str]] = []
    for part in chunks(sorted(set(artifact_ids)), CHUNK):
        test, args = raw.one_of(part)
        sql = f"SELECT execution_id, artifact_id, role FROM mt_edges WHERE artifact_id {test} AND direction = 'INPUT'"
        out.extend((r[0], r[1], r[2]) for r in raw.rows(sql, args))
    return sorted(out)


def _readers_around(raw: Raw, executions: Iterable[str], known: Iterable[str],
                    shared: Iterable[str]) -> list[tuple[str, str, str]]:
    """(execution id, artifact id, role) of the INPUT edges from any artifact these
    executions read or wrote, into executions other than the ``known`` ones (the
    lineage's own) and, when they are few, from artifacts other than the ``shared``
    ones. Asked by execution (a few ids, the primary key) rather than by artifact (up
    to thousands of ids): the same answer, far less to send and plan."""
    skip_x = sorted(set(known))[:MAX_SKIP]
    skip_a = sorted(set(shared))
    skip_a = skip_a if len(skip_a) <= MAX_SKIP else []
    cond, skip_args = "", []
    for column, skip in (("r.execution_id", skip_x), ("s.artifact_id", skip_a)):
        if skip:
            test, args = raw.none_of(skip)
            cond, skip_args = f"{cond} AND {column} {test}", [*skip_args, *args]
    out: set[tuple[str, str, str]] = set()
    for part in chunks(sorted(set(executions)), CHUNK - len(skip_x) - len(skip_a)):
        test, args = raw.one_of(part)
        sql = (f"SELECT r.execution_id, r.artifact_id, r.role FROM mt_edges s "
               f"JOIN mt_edges r ON r.artifact_id = s.artifact_id AND r.direction = 'INPUT' "
               f"WHERE s.execution_id {test}{cond}")
        out.update((r[0], r[1], r[2]) for r in raw.rows(sql, [*args, *skip_args]))
    return sorted(out)


def _load_steps(raw: Raw, side: Side, executions: Sequence[str]) -> None:
    """Every edge of these executions, and the nodes on them this side does not know."""
    edges: list[tuple[str, str, str, str]] = []
    for part in chunks(sorted(set(executions)), CHUNK):
        test, args = raw.one_of(part)
        sql = f"SELECT execution_id, direction, artifact_id, role FROM mt_edges WHERE execution_id {test}"
        edges.extend((r[0], r[1], r[2], r[3]) for r in raw.rows(sql, args))
    for ex in executions:
        side.inputs[ex], side.outputs[ex] = [], []
    for ex, direction, art, role in sorted(edges):
        (side.inputs if direction == "INPUT" else side.outputs)[ex].append((role, art))
    missing_arts = sorted({e[2] for e in edges} - set(side.nodes))
    missing_execs = sorted(set(executions) - set(side.nodes))
    side.nodes.update(load_graph_nodes(raw, missing_arts, missing_execs))


def add_neighbours(raw: Raw, a: Side, b: Side) -> None:
    """Add each side's consumers (steps that read an artifact target) and observers (see
    the module's docstring), the observers round by round, so that a side's new observer
    outputs count as that side's in the next round."""
    for side, other in ((a, b), (b, a)):
        if isinstance(side.target, Artifact):
            found = [(x, art, role) for x, art, role in _reader_edges(raw, [side.target.id])
                     if x not in side.walked and x not in other.walked]
            _load_steps(raw, side, sorted({x for x, _, _ in found}))
            for ex, art, role in found:
                if ex not in side.places:
                    _adopt(side, ex, art, role, "consumer")
    for _ in range(OBSERVER_ROUNDS):
        grew = [_observe(raw, a, b), _observe(raw, b, a)]
        if not any(grew):
            return


def _adopt(side: Side, ex: str, anchor: str, role: str, kind: str) -> None:
    """Place ``ex`` as a reader of ``anchor`` (the one artifact its place hangs from). An
    observer's outputs join the side's scope (their readers are observers too); a
    consumer's do not: what was made from the target is not part of why it differs."""
    depth, anchor_key = side.artifact_keys.get(anchor, (0, ""))
    side.readers.setdefault(anchor, []).append((role, ex))
    key = f"{anchor_key}>{role}>{_label(side.execution(ex))}"
    side.places[ex] = Place(depth, key, kind)
    for _, out in side.outputs.get(ex, ()):
        if kind == "observer":
            side.scope.add(out)
        side.producer.setdefault(out, ex)
        side.artifact_keys.setdefault(out, (depth, key))


def _observe(raw: Raw, side: Side, other: Side) -> bool:
    """One round: readers of this side's own artifacts that belong to it. True when any
    was added."""
    anchors = side.scope - other.scope - side.looked_at - {side.target.id}
    side.looked_at.update(anchors)
    # Every artifact of the scope is an input or output of a placed step.
    around = [x for x in side.places
              if any(a in anchors for _, a in (*side.inputs.get(x, ()), *side.outputs.get(x, ())))]
    known = [x for x in side.walked | other.walked | set(side.places)
             if isinstance(side.nodes.get(x) or other.nodes.get(x), Execution)]
    for ex, art, role in _readers_around(raw, around, known, side.scope & other.scope) if around else []:
        if art in anchors and ex not in side.walked and ex not in other.walked and ex not in side.places:
            side.pending.setdefault(ex, []).append((art, role))
    unloaded = [x for x in side.pending if x not in side.inputs]
    if unloaded:
        _load_steps(raw, side, unloaded)
    accepted = sorted(x for x in side.pending if _belongs(side, x))
    for ex in accepted:
        candidates = side.pending.pop(ex)
        art, role = min(candidates, key=lambda c: (side.artifact_keys.get(c[0], (0, "")), c[1], c[0]))
        _adopt(side, ex, art, role, "observer")
    return bool(accepted)


def _belongs(side: Side, execution_id: str) -> bool:
    """Every input is in the side's scope or was recorded no later than its target."""
    for _, art in side.inputs.get(execution_id, ()):
        if art in side.scope:
            continue
        created = side.artifact(art).created_at
        if created is None or side.reference_time is None or created > side.reference_time:
            return False
    return True


__all__ = ["MAX_RUN_EXECUTIONS", "OBSERVER_ROUNDS", "Place", "Side", "add_neighbours", "build_side", "pipeline_names"]
