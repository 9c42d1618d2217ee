"""Pipeline steps: ``@step`` declares what a tracked function consumes and when it runs.

A step is a ``@track``-ed function plus a declaration the consumer can evaluate without
importing user code: input slots (artifact type, optional filter in the query language),
output types, a trigger policy and a retry bound. ``metatrail worker my_pipeline.steps``
imports the module, emits one ``step.registered`` event per step and runs the steps when
the lineage graph triggers them. Calling a step directly works like any tracked function::

    @step(inputs={"examples": "Examples"}, outputs=["Model"], when="latest",
          pipeline="demo", filters={"examples": "properties.split = 'train'"}, max_retries=2)
    def train(examples: Artifact) -> Artifact: ...

Policies: ``each`` (every new input set), ``latest`` (a burst coalesces into one run on
the newest inputs), ``all_new`` (run when every input has a newer version than the last
run). See :mod:`metatrail.consumer.triggers.evaluate`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from metatrail.producer.cache import WARM_START_ROLE, latest, to_producer_artifact
from metatrail.producer.capture import code_version
from metatrail.producer.context import (
    TriggerContext,
    current_run,
    current_trigger,
    current_trigger_id,
    running_trigger,
)
from metatrail.producer.runs import run
from metatrail.producer.track import track
from metatrail.schemas.events import CodeVersion, StepInput, StepRegistered
from metatrail.schemas.ids import new_id
from metatrail.schemas.ids import step_id as _step_id

__all__ = [
    "Step",
    "TriggerContext",
    "WARM_START_ROLE",
    "current_trigger",
    "current_trigger_id",
    "latest",
    "running_trigger",
    "step",
    "steps_in",
]

Policy = Literal["each", "latest", "all_new"]
POLICIES: tuple[str, ...] = ("each", "latest", "all_new")


#: module name -> step name -> step, filled as user modules are imported.
_REGISTRY: dict[str, dict[str, Step]] = {}


class Step:
    """A declared pipeline step wrapping a tracked function. Call it like the function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        inputs: Mapping[str, str],
        outputs: Sequence[str],
        when: Policy,
        pipeline: str | None,
        filters: Mapping[str, str] | None,
        max_retries: int,
        name: str | None,
        track_options: Mapping[str, Any],
    ) -> None:
        if when not in POLICIES:
            raise ValueError(f"@step(when=...) must be one of {POLICIES}, got {when!r}")
        if max_retries < 0 or max_retries > 100:
            raise ValueError(f"@step(max_retries=...) must be in 0..100, got {max_retries}")
        unknown = sorted(set(filters or {}) - set(inputs))
        if unknown:
            raise ValueError(f"@step(filters=...) names slots that are not inputs: {unknown}")
        self.fn = fn
        self.name = name or fn.__name__
        self.pipeline = pipeline
        self.policy: Policy = when
        self.max_retries = max_retries
        self.inputs = {
            slot: StepInput(type=type_name, filter=(filters or {}).get(slot))
            for slot, type_name in inputs.items()
        }
        self.outputs = list(outputs)
        self.module = fn.__module__
        self.qualname = fn.__qualname__
        options = dict(track_options)
        options.setdefault("name", self.name)
        self.tracked = track(**options)(fn)
        functools.update_wrapper(self, fn)

    @property
    def step_id(self) -> uuid.UUID:
        """Deterministic: the same step in every process."""
        return _step_id(self.pipeline, self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the step like the tracked function. Outside any ``run(...)``, a step of a
        pipeline opens a run in it, so its outputs join the pipeline (and can trigger the
        steps after it)."""
        if self.pipeline is None or current_run() is not None:
            return self.tracked(*args, **kwargs)
        with run(f"{self.name}-{new_id()}", pipeline=self.pipeline):
            return self.tracked(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Step {self.pipeline or '-'}/{self.name} when={self.policy}>"

    def registration(self) -> StepRegistered:
        """The ``step.registered`` event declaring this step."""
        code: CodeVersion | None = code_version(self.fn)
        return StepRegistered(
            step_id=self.step_id,
            name=self.name,
            pipeline=self.pipeline,
            module=self.module[:255],
            qualname=self.qualname[:255],
            inputs=dict(self.inputs),
            outputs=list(self.outputs),
            policy=self.policy,
            code_version=code,
            max_retries=self.max_retries,
        )

    def run_triggered(self, inputs: Mapping[str, Any], trigger_id: uuid.UUID, attempt: int = 0) -> Any:
        """Run for a trigger: ``inputs`` maps slot -> artifact (query domain objects are
        converted to producer artifacts). The execution carries ``trigger_id``. Raises
        what the step raises (after ``@track`` recorded the failure)."""
        args = {slot: to_producer_artifact(a) for slot, a in inputs.items()}
        with running_trigger(trigger_id, attempt), run(f"{self.name}-{trigger_id}", pipeline=self.pipeline):
            return self.tracked(**args)


def step(
    *,
    inputs: Mapping[str, str],
    outputs: Sequence[str] = (),
    when: Policy = "each",
    pipeline: str | None = None,
    filters: Mapping[str, str] | None = None,
    max_retries: int = 0,
    name: str | None = None,
    **track_options: Any,
) -> Callable[[Callable[..., Any]], Step]:
    """Declare a pipeline step (see the module docstring). Extra keyword arguments go to
    ``@track`` (e.g. ``cache=False``, ``params=...``). Raises ``ValueError`` on a bad
    declaration, at import time of the user's module."""

    def decorate(fn: Callable[..., Any]) -> Step:
        s = Step(
            fn,
            inputs=inputs,
            outputs=outputs,
            when=when,
            pipeline=pipeline,
            filters=filters,
            max_retries=max_retries,
            name=name,
            track_options=track_options,
        )
        _REGISTRY.setdefault(s.module, {})[s.name] = s
        return s

    return decorate


def steps_in(module: ModuleType | str) -> list[Step]:
    """The steps declared in a module (by module object or dotted name), in order of
    declaration; also those of its submodules already imported."""
    name = module if isinstance(module, str) else module.__name__
    found: list[Step] = []
    for mod, steps in _REGISTRY.items():
        if mod == name or mod.startswith(name + "."):
            found.extend(steps.values())
    return found
