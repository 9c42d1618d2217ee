"""One tracked call: what is fixed per decorated function, and the steps of a call.

``Spec`` holds what ``@track`` computes once per function (type, name, signature, code
version, memoised fingerprints). A call goes ``begin`` (bind the arguments, split them
into input artifacts and parameters, fingerprint them, and either find a cache hit or
spool ``ExecutionStarted``), then ``finish`` (outputs, ``ExecutionCompleted``) or ``fail``
(``ExecutionFailed``). ``metatrail.producer.track`` (functions, coroutines) and
``metatrail.producer.track_gen`` (generators) build their wrappers from these steps.

Every step here reports a recording error (``emitter.report``) instead of raising it
into the user's call, unless strict mode is on.

Caching (``cache=True``, and ``METATRAIL_CACHE=on``): the fingerprint is sha256 over
(type, source hash, canonical JSON of parameters, sorted (role, input digest or id)). If
``metatrail.producer.cache.find_cached(fingerprint, settings)`` finds an earlier COMPLETE
execution whose outputs are still what it recorded, the function does not run: an
``ExecutionCached`` is recorded and the earlier outputs are returned in the shape the
function returns (stored as the ``metatrail.return_shape`` bookkeeping property). When an
earlier execution was passed over (an output changed on disk or is gone), the call runs and
its execution says why in the ``cache_miss_reason`` custom property, which users see.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from metatrail.producer import emitter
from metatrail.producer.artifacts import Artifact
from metatrail.producer.build import make
from metatrail.producer.cache import find_cached
from metatrail.producer.capture import code_version, source_hash, summarise
from metatrail.producer.context import current_trigger_id
from metatrail.producer.recorder import ExecutionHandle, record_cached, start_execution
from metatrail.schemas.events import CodeVersion
from metatrail.schemas.reserved import RETURN_SHAPE
from metatrail.schemas.values import INT_MAX, INT_MIN, Properties, PropertyValue

_TYPE_RE = re.compile(r"[^A-Za-z0-9_.:\-]")
#: What ``begin`` and the cache lookup return when there is no cached value to return.
MISS = object()
#: Custom property of an execution that ran although an earlier one had its fingerprint:
#: why that one was not reused (an output changed on disk, was deleted...).
CACHE_MISS_REASON = "cache_miss_reason"
MAX_REASON_CHARS = 2_000


def _type_name(fn: Callable[..., Any]) -> str:
    qualname = str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "call")
    name = _TYPE_RE.sub("_", qualname.replace("<locals>.", ""))[:128]
    return name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"[:128]


def _typed(value: Any) -> PropertyValue:
    if value.__class__ is bool:
        return make(PropertyValue, type="bool", value=value)
    if value.__class__ is int and INT_MIN <= value <= INT_MAX:
        return make(PropertyValue, type="int", value=value)
    if value.__class__ is float:
        return make(PropertyValue, type="float", value=value)
    if value.__class__ is str:
        return make(PropertyValue, type="string", value=value)
    return PropertyValue.of(value)


class Spec:
    """What is fixed per decorated function (computed once)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        type: str | None,
        name: str | None,
        cache: bool,
        capture_args: bool,
        exclude: tuple[str, ...],
    ) -> None:
        self.fn = fn
        self.type = type or _type_name(fn)
        self.name = name or getattr(fn, "__name__", self.type)
        self.cache = cache
        self.capture_args = capture_args
        self._code_version: CodeVersion | None = None
        self._fingerprints: dict[Any, str] = {}
        self.sig = inspect.signature(fn)
        params = list(self.sig.parameters.values())
        self.positional = [
            p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self.simple = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        self.defaults = [(p.name, p.default) for p in params if p.default is not p.empty]
        self.exclude = set(exclude)
        if params and params[0].name in ("self", "cls"):
            self.exclude.add(params[0].name)

    @property
    def code_version(self) -> CodeVersion:
        if self._code_version is None:
            self._code_version = code_version(self.fn)
        return self._code_version

    def fingerprint(self, plain: dict[str, Any], inputs: list[tuple[Artifact, str]]) -> str:
        """``fingerprint(...)``, memoised for calls whose parameters are all scalars."""
        try:
            key = (
                tuple(sorted(plain.items())),
                tuple((role, a.digest or a.id_text(as_output=False)) for a, role in inputs),
            )
            found = self._fingerprints.get(key)
        except TypeError:  # unhashable parameter values
            return fingerprint(self.type, source_hash(self.fn), plain, inputs)
        if found is None:
            if len(self._fingerprints) > 1024:
                self._fingerprints.clear()
            found = self._fingerprints[key] = fingerprint(
                self.type, source_hash(self.fn), plain, inputs
            )
        return found

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.simple and len(args) <= len(self.positional):
            bound = dict(zip(self.positional, args))
            if kwargs:
                bound.update(kwargs)
            for n, d in self.defaults:
                if n not in bound:
                    bound[n] = d
            return bound
        try:
            ba = self.sig.bind(*args, **kwargs)
        except TypeError:
            return {}
        ba.apply_defaults()
        return dict(ba.arguments)


def _split(
    spec: Spec, bound: dict[str, Any]
) -> tuple[list[tuple[Artifact, str]], Properties, dict[str, Any]]:
    inputs: list[tuple[Artifact, str]] = []
    typed_params: Properties = {}
    plain: dict[str, Any] = {}
    for n, v in bound.items():
        if n in spec.exclude:
            continue
        if isinstance(v, Artifact):
            inputs.append((v, n))
            continue
        if isinstance(v, (list, tuple)) and v and all(isinstance(a, Artifact) for a in v):
            inputs.extend((a, f"{n}:{i}") for i, a in enumerate(v))
            continue
        if isinstance(v, dict) and v and all(isinstance(a, Artifact) for a in v.values()):
            inputs.extend((a, f"{n}:{k}") for k, a in v.items())
            continue
        if spec.capture_args:
            s = summarise(v)
            plain[n] = s
            typed_params[n] = _typed(s)
    return inputs, typed_params, plain


def fingerprint(
    type_name: str, src_hash: str | None, params: dict[str, Any], inputs: list[tuple[Artifact, str]]
) -> str:
    """sha256 over (type, source hash, canonical parameters, sorted (role, digest or id))."""
    refs = sorted((role, a.digest or a.id_text(as_output=False)) for a, role in inputs)
    text = json.dumps(
        [type_name, src_hash, params, refs], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _outputs(result: Any) -> tuple[list[tuple[Artifact, str]], dict[str, Any]]:
    """Artifacts in a return value, and the shape to rebuild it from cached outputs."""
    if isinstance(result, Artifact):
        return [(result, "output")], {"kind": "single"}
    if result is None:
        return [], {"kind": "none"}
    if isinstance(result, (tuple, list)):
        pairs = [(a, f"output:{i}") for i, a in enumerate(result) if isinstance(a, Artifact)]
        kind = type(result).__name__ if len(pairs) == len(result) else "opaque"
        return pairs, {"kind": kind if kind in ("tuple", "list") else "opaque", "n": len(result)}
    if isinstance(result, dict):
        pairs = [(a, str(k)) for k, a in result.items() if isinstance(a, Artifact)]
        full = len(pairs) == len(result) and all(isinstance(k, str) for k in result)
        return pairs, ({"kind": "dict", "keys": list(result)} if full else {"kind": "opaque"})
    return [], {"kind": "opaque"}


def _rebuild(shape: dict[str, Any] | None, outputs: list[tuple[Artifact, str]]) -> Any:
    """The return value from cached outputs, or ``MISS`` if it cannot be rebuilt."""
    by_role = {role: a for a, role in outputs}
    if shape is None:  # infer from roles
        if set(by_role) == {"output"}:
            shape = {"kind": "single"}
        elif by_role and all(r.startswith("output:") for r in by_role):
            shape = {"kind": "tuple", "n": len(by_role)}
        elif by_role:
            shape = {"kind": "dict", "keys": sorted(by_role)}
        else:
            return MISS
    kind = shape.get("kind")
    try:
        if kind == "single":
            return by_role["output"]
        if kind == "none":
            return None
        if kind in ("tuple", "list"):
            items = [by_role[f"output:{i}"] for i in range(int(shape["n"]))]
            return tuple(items) if kind == "tuple" else items
        if kind == "dict":
            return {k: by_role[k] for k in shape["keys"]}
    except (KeyError, ValueError, TypeError):
        return MISS
    return MISS


class Call:
    """A call that ``begin`` started: its execution handle (None when nothing is being
    recorded: a cache hit, or a recording error), or the cached value to return."""

    __slots__ = ("handle", "cached")

    def __init__(self, handle: ExecutionHandle | None, cached: Any = MISS) -> None:
        self.handle = handle
        self.cached = cached


def begin(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """Start recording a call of ``spec.fn`` with these arguments: a cache hit (the call
    must not run: return ``Call.cached``), or a started execution. Never raises (unless
    strict); blocking only for a cache lookup (one store read)."""
    try:
        inputs, typed_params, plain = _split(spec, spec.bind(args, kwargs))
        fp = spec.fingerprint(plain, inputs)
        miss_reason = None
        if spec.cache:
            hit, miss_reason = _lookup(spec, fp, inputs, typed_params)
            if hit is not MISS:
                return Call(None, hit)
        return Call(
            start_execution(
                spec.type,
                spec.name,
                inputs=inputs,
                typed_parameters=typed_params,
                code_version=spec.code_version,
                fingerprint=fp,
                trigger_id=current_trigger_id(),
                custom_properties={CACHE_MISS_REASON: miss_reason} if miss_reason else None,
            )
        )
    except Exception as exc:
        emitter.report(f"@track {spec.type}", exc)
        return Call(None)


def _lookup(
    spec: Spec, fp: str, inputs: list[tuple[Artifact, str]], params: Properties
) -> tuple[Any, str | None]:
    """(the cached return value, or ``MISS``; why earlier executions with this fingerprint
    were not reused, or None). A hit is recorded as an ``ExecutionCached``."""
    settings = emitter.settings()
    if not settings.cache_enabled:
        return MISS, None
    misses: list[str] = []
    hit = find_cached(fp, settings, misses=misses)
    reason = "; ".join(misses)[:MAX_REASON_CHARS] or None
    if hit is None:
        return MISS, reason
    outputs = list(hit.outputs)
    value = _rebuild(hit.return_shape, outputs)
    if value is MISS:
        return MISS, f"execution {hit.execution_id}: its outputs do not rebuild the return value"
    record_cached(
        spec.type,
        spec.name,
        cached_from=hit.execution_id,
        inputs=inputs,
        outputs=outputs,
        fingerprint=fp,
        parameters=params,
        code_version=spec.code_version,
        trigger_id=current_trigger_id(),
        custom_properties={RETURN_SHAPE: hit.return_shape} if hit.return_shape else None,
    )
    return value, None


def finish(
    spec: Spec,
    handle: ExecutionHandle | None,
    result: Any,
    extra: list[tuple[Artifact, str]] | None = None,
) -> None:
    """Complete ``handle`` with the artifacts in ``result`` (after ``extra``: a
    generator's yielded ones) as outputs. Never raises (unless strict)."""
    if handle is None:
        return
    try:
        pairs, shape = _outputs(result)
        if extra:
            pairs = extra + pairs
        handle.complete(pairs, {RETURN_SHAPE: shape} if spec.cache else None)
    except Exception as exc:
        emitter.report(f"@track {spec.type}", exc)


def fail(handle: ExecutionHandle | None, exc: BaseException) -> None:
    """Record ``handle`` FAILED with ``exc`` (the caller re-raises it)."""
    if handle is not None:
        handle.fail(exc)
