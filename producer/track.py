"""``@track``: record every call of a function as an execution.

Works on functions, methods, async functions, generators and async generators. Per call:
``ExecutionStarted`` (type = the qualified name unless given, parameters = bound
arguments made JSON-safe and summarised, minus ``self``/``cls`` and ``exclude``, code
version, environment, fingerprint, INPUT edges for every ``Artifact`` argument — also
inside lists/tuples/dicts, role = parameter name, ``name:i`` / ``name:key``), then
``ExecutionCompleted`` with OUTPUT edges for returned artifacts (role ``output``,
``output:i``, or the dict key; a generator's yielded artifacts too), or
``ExecutionFailed`` — and the user's exception is re-raised unchanged.

Caching (``cache=True``): see ``metatrail.producer.calls``, where the steps of a call
(begin, finish, fail) live; this module wraps functions and coroutines with them, and
``metatrail.producer.track_gen`` generators.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from metatrail.producer.calls import MISS, Spec, begin, fail, finish
from metatrail.producer.context import CURRENT_EXECUTION
from metatrail.producer.track_gen import async_gen_wrapper, gen_wrapper

F = TypeVar("F", bound=Callable[..., Any])


@overload
def track(fn: F) -> F: ...
@overload
def track(
    *,
    type: str | None = ...,
    name: str | None = ...,
    cache: bool = ...,
    capture_args: bool = ...,
    exclude: list[str] | tuple[str, ...] = ...,
) -> Callable[[F], F]: ...


def track(
    fn: Any = None,
    *,
    type: str | None = None,
    name: str | None = None,
    cache: bool = False,
    capture_args: bool = True,
    exclude: list[str] | tuple[str, ...] = (),
) -> Any:
    """Record each call of ``fn`` as an execution (see module doc). Usable bare (``@track``)
    or with options (``@track(type="Trainer", cache=True, exclude=["password"])``)."""
    if fn is None:
        return lambda f: _decorate(f, type, name, cache, capture_args, tuple(exclude))
    return _decorate(fn, type, name, cache, capture_args, tuple(exclude))


def _decorate(
    fn: Any,
    type: str | None,
    name: str | None,
    cache: bool,
    capture_args: bool,
    exclude: tuple[str, ...],
) -> Any:
    is_gen = inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn)
    spec = Spec(fn, type, name, cache and not is_gen, capture_args, exclude)
    if inspect.isasyncgenfunction(fn):
        return functools.wraps(fn)(async_gen_wrapper(spec))
    if inspect.isgeneratorfunction(fn):
        return functools.wraps(fn)(gen_wrapper(spec))
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = begin(spec, args, kwargs)
            if call.cached is not MISS:
                return call.cached
            token = CURRENT_EXECUTION.set(call.handle)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                CURRENT_EXECUTION.reset(token)
                fail(call.handle, exc)
                raise
            CURRENT_EXECUTION.reset(token)
            finish(spec, call.handle, result)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = begin(spec, args, kwargs)
        if call.cached is not MISS:
            return call.cached
        token = CURRENT_EXECUTION.set(call.handle)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            CURRENT_EXECUTION.reset(token)
            fail(call.handle, exc)
            raise
        CURRENT_EXECUTION.reset(token)
        finish(spec, call.handle, result)
        return result

    return wrapper
