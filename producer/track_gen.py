"""``@track`` for generators and async generators.

The execution starts when the generator starts and ends when it is exhausted (COMPLETE,
outputs = yielded and returned artifacts), raises (FAILED, exception re-raised) or is
closed early (COMPLETE with what it yielded so far). The tracked call is the *current*
execution only while the generator's own code runs, never in the consumer's code between
two items: each step is driven inside the handle's context.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from metatrail.producer.artifacts import Artifact
from metatrail.producer.calls import MISS, Spec, begin, fail, finish
from metatrail.producer.context import CURRENT_EXECUTION


def gen_wrapper(spec: Spec) -> Callable[..., Generator[Any, Any, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = begin(spec, args, kwargs)
        if call.cached is not MISS:
            return (yield from ())
        handle = call.handle
        yielded: list[tuple[Artifact, str]] = []
        gen = spec.fn(*args, **kwargs)

        def step(method: Callable[..., Any], *arg: Any) -> Any:
            token = CURRENT_EXECUTION.set(handle)
            try:
                return method(*arg)
            finally:
                CURRENT_EXECUTION.reset(token)

        try:
            item = step(gen.send, None)
            while True:
                if isinstance(item, Artifact):
                    yielded.append((item, f"yield:{len(yielded)}"))
                try:
                    sent = yield item
                except GeneratorExit:
                    step(gen.close)
                    finish(spec, handle, None, yielded)
                    raise
                except BaseException as exc:
                    item = step(gen.throw, exc)
                else:
                    item = step(gen.send, sent)
        except StopIteration as stop:
            finish(spec, handle, stop.value, yielded)
            return stop.value
        except GeneratorExit:
            raise
        except BaseException as exc:
            fail(handle, exc)
            raise

    return wrapper


def async_gen_wrapper(spec: Spec) -> Callable[..., AsyncGenerator[Any, Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = begin(spec, args, kwargs)
        if call.cached is not MISS:
            return
        handle = call.handle
        yielded: list[tuple[Artifact, str]] = []
        agen = spec.fn(*args, **kwargs)

        async def step(method: Callable[..., Any], *arg: Any) -> Any:
            token = CURRENT_EXECUTION.set(handle)
            try:
                return await method(*arg)
            finally:
                CURRENT_EXECUTION.reset(token)

        try:
            item = await step(agen.asend, None)
            while True:
                if isinstance(item, Artifact):
                    yielded.append((item, f"yield:{len(yielded)}"))
                try:
                    sent = yield item
                except GeneratorExit:
                    await step(agen.aclose)
                    finish(spec, handle, None, yielded)
                    raise
                except BaseException as exc:
                    item = await step(agen.athrow, exc)
                else:
                    item = await step(agen.asend, sent)
        except StopAsyncIteration:
            finish(spec, handle, None, yielded)
        except GeneratorExit:
            raise
        except BaseException as exc:
            fail(handle, exc)
            raise

    return wrapper
