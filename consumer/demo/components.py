"""The demo pipeline's components, TFX-style, as ``@step``s the lineage graph triggers.

ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer -> Evaluator ->
Pusher, for an online shoe retailer's click-through-rate model. Each step declares the
artifact type that starts it; a worker (``run_embedded`` in-process, or
``metatrail worker metatrail.consumer.demo.components`` with Kafka) runs it when such an artifact of
the pipeline becomes LIVE. Whatever else a step needs it looks up in the store and records
as an INPUT with a role (the schema, the validator's baseline statistics, the model an
evaluation is of, the model in production), so lineage shows it.

ExampleGen, StatisticsGen and SchemaGen are pure functions of their one input and are
cached (TFX semantics: same code, parameters and input digests -> reuse the outputs); the
others depend on what they look up, so they always run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from metatrail.consumer.demo import analysis, data, model
from metatrail import Artifact, log_artifact, log_metric, log_metrics, log_params
from metatrail.producer.cache import latest, to_producer_artifact
from metatrail.producer.steps import step

PIPELINE = "shoe-ctr"
#: The trainer's framework: keras, numpy or auto (Keras when importable). The demo sets it
#: for an in-process worker; a worker process reads DEMO_TRAINER.
TRAINER = os.environ.get("DEMO_TRAINER", "auto")
#: A candidate is refused when any slice's AUC falls by more than this against the model
#: in production, or when its overall AUC is lower.
MAX_SLICE_AUC_DROP = 0.08


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))


def _read_json(artifact: Artifact) -> Any:
    return json.loads(Path(artifact.uri).read_text())


#: File marking the root of a demo workspace; outputs go under it.
WORKSPACE_MARKER = "METATRAIL_DEMO_WORKSPACE"


def _tag(artifact: Artifact | None) -> str:
    return "none" if artifact is None else (artifact.digest or "nodigest").split(":")[-1][:12]


def _workspace(artifact: Artifact) -> Path:
    uri = Path(artifact.uri).resolve()
    return next((p for p in uri.parents if (p / WORKSPACE_MARKER).exists()), uri.parent)


def _out(artifact: Artifact, folder: str) -> Path:
    """Outputs go under the workspace of the input they derive from, named by the input's
    digest, so the same inputs always produce the same paths."""
    return _workspace(artifact) / folder / _tag(artifact)


def _lookup(artifact_type: str, role: str, where: str | None = None) -> Artifact | None:
    """The pipeline's newest LIVE artifact of a type (matching ``where``), recorded as an
    INPUT of the running step with ``role``; None if there is none."""
    if where is None:
        return latest(artifact_type, PIPELINE, role=role)
    from metatrail.consumer.query.store import Store
    from metatrail.consumer.worker.lookup import shared_engine
    from metatrail.producer import emitter
    from metatrail.schemas.ids import context_id

    settings = emitter.settings()
    if settings.transport == "embedded":
        emitter.flush(settings.exit_flush_timeout_s)
    found = Store(shared_engine(settings.store_url)).latest(
        artifact_type, context=str(context_id("Pipeline", PIPELINE)), where=where
    )
    if found is None:
        return None
    return log_artifact(to_producer_artifact(found), role, direction="input")


def _by_id(artifact_id: str, role: str) -> Artifact:
    """An artifact of the store by id, recorded as an INPUT of the running step."""
    from metatrail.consumer.query.store import Store
    from metatrail.consumer.worker.lookup import shared_engine
    from metatrail.producer import emitter

    stored = Store(shared_engine(emitter.settings().store_url)).artifact(artifact_id)
    return log_artifact(to_producer_artifact(stored), role, direction="input")


@step(inputs={"raw": "ImpressionLog"}, outputs=["Examples"], pipeline=PIPELINE, type="ExampleGen", cache=True)
def example_gen(raw: Artifact, eval_fraction: float = 0.2) -> Artifact:
    """Split the day's impression log into train and eval examples."""
    rows = data.read_csv(Path(raw.uri))
    mask = data.split_mask(len(rows), eval_fraction)
    folder = _out(raw, "examples")
    data.write_csv(rows.take(~mask), folder / "train.csv")
    data.write_csv(rows.take(mask), folder / "eval.csv")
    return Artifact(
        str(folder), type="Examples", name="impressions",
        properties={"span": int(rows.day[0]), "train_rows": int((~mask).sum()), "eval_rows": int(mask.sum())},
    )


@step(inputs={"examples": "Examples"}, outputs=["Statistics"], pipeline=PIPELINE, type="StatisticsGen", cache=True)
def statistics_gen(examples: Artifact) -> Artifact:
    """Per-feature statistics of the training split, overall and per product category."""
    stats = analysis.compute_statistics(data.read_csv(Path(examples.uri) / "train.csv"))
    path = _out(examples, "statistics") / "statistics.json"
    _write_json(path, stats)
    price = stats["features"]["price"]
    return Artifact(
        str(path), type="Statistics", name="train-statistics",
        properties={"num_examples": stats["num_examples"], "price_mean": round(price.get("mean", 0.0), 2)},
    )


@step(inputs={"feature_spec": "FeatureSpec"}, outputs=["Schema"], pipeline=PIPELINE, type="SchemaGen", cache=True)
def schema_gen(feature_spec: Artifact) -> Artifact:
    """The schema (domains, presence, drift comparators) from the catalog's feature spec."""
    schema = analysis.infer_schema(_read_json(feature_spec))
    path = _out(feature_spec, "schema") / "schema.json"
    _write_json(path, schema)
    return Artifact(str(path), type="Schema", name="ctr-schema", properties={"features": len(schema["features"])})


@step(inputs={"statistics": "Statistics", "schema": "Schema"}, outputs=["ExampleAnomalies"], pipeline=PIPELINE,
      type="ExampleValidator")
def example_validator(statistics: Artifact, schema: Artifact) -> Artifact:
    """Anomalies of the statistics against the pipeline's schema, and drift against the
    previous statistics of the pipeline (the baseline). The schema is an input, not a
    lookup: SchemaGen runs beside ExampleGen, and through Kafka its output may be applied
    after the statistics are, so the validator waits for both."""
    baseline = _lookup("Statistics", "baseline", f"id != '{statistics.id}'")
    base = _read_json(baseline) if baseline is not None else None
    found = analysis.validate(_read_json(statistics), _read_json(schema), base)
    path = _out(statistics, "anomalies") / f"anomalies-vs-{_tag(baseline)}.json"
    _write_json(path, found)
    kinds = sorted({a["kind"] for a in found})
    drifted = sorted({f"{a['feature']}@{a['slice']}" for a in found if a["kind"] == "distribution_drift"})
    log_metrics({"anomalies": len(found), "drift_anomalies": len(drifted)})
    return Artifact(
        str(path), type="ExampleAnomalies", name="anomalies",
        properties={"anomaly_count": len(found), "drift": bool(drifted), "kinds": ",".join(kinds)},
        custom_properties={"drifted": drifted},
    )


@step(inputs={"examples": "Examples", "schema": "Schema"}, outputs=["Model"], pipeline=PIPELINE, type="Trainer")
def trainer(examples: Artifact, schema: Artifact, epochs: int = 6) -> Artifact:
    """Train the click-through model on the train split (Keras or numpy) with the
    pipeline's schema (an input: it may be applied after the examples, see the validator)."""
    framework = TRAINER if TRAINER != "auto" else ("keras" if model.keras_available() else "numpy")
    log_params({"framework": framework})
    train = data.read_csv(Path(examples.uri) / "train.csv")
    enc = model.encoder_from_schema(_read_json(schema), train)
    x, y = model.encode(train, enc), train.clicked.astype(np.float32)
    folder = _out(examples, "models") / f"{framework}-e{epochs}-{_tag(schema)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.json").write_text(json.dumps(enc, sort_keys=True))
    if framework == "keras":
        model.import_keras()  # picks a backend before anything imports keras
        from metatrail.keras import MetadataCallback

        model.train_keras(x, y, folder / "model.keras", epochs, [MetadataCallback(log_model=False)])
    else:
        params = model.train_numpy(x, y.astype(np.float64), iterations=2 * epochs,
                                   on_step=lambda step, loss: log_metric("loss", loss, step=step))
        (folder / "model.json").write_text(json.dumps(params))
    return Artifact(
        str(folder), type="Model", name="ctr-model",
        properties={"framework": framework, "examples_id": str(examples.id)},
    )


def _model_file(folder: Path) -> Path:
    return folder / "model.keras" if (folder / "model.keras").exists() else folder / "model.json"


@step(inputs={"model_artifact": "Model"}, outputs=["ModelEvaluation"], pipeline=PIPELINE, type="Evaluator")
def evaluator(model_artifact: Artifact) -> Artifact:
    """AUC and accuracy of the model on the eval split of the examples it was trained on,
    overall and per product category."""
    examples = _by_id(str(model_artifact.properties["examples_id"].python()), "examples")
    folder = Path(model_artifact.uri)
    rows = data.read_csv(Path(examples.uri) / "eval.csv")
    enc = json.loads((folder / "encoder.json").read_text())
    result = model.evaluate(rows, model.predict(_model_file(folder), model.encode(rows, enc)))
    metrics = {"auc": result["overall"]["auc"], "accuracy": result["overall"]["accuracy"],
               "examples": float(result["overall"]["examples"])}
    for name, m in result["slices"].items():
        metrics[f"auc/{name}"] = m["auc"]
        metrics[f"accuracy/{name}"] = m["accuracy"]
        metrics[f"examples/{name}"] = float(m["examples"])  # the slice's size (the UI flags small ones)
    log_metrics(metrics)
    path = _out(model_artifact, "evaluation") / f"on-{_tag(examples)}.json"
    _write_json(path, result)
    return Artifact(
        str(path), type="ModelEvaluation", name="evaluation",
        properties={
            "auc": result["overall"]["auc"], "accuracy": result["overall"]["accuracy"],
            "model_id": str(model_artifact.id),
        },
        custom_properties={"slice_auc": {k: v["auc"] for k, v in result["slices"].items()}},
    )


def push_decision(candidate: dict[str, Any], deployed: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether the candidate's evaluation beats the deployed model's (blessing rule)."""
    if deployed is None:
        return True, "no model deployed yet"
    reasons = []
    if candidate["overall"]["auc"] < deployed["overall"]["auc"]:
        reasons.append(f"overall AUC {candidate['overall']['auc']:.3f} < {deployed['overall']['auc']:.3f}")
    for name, m in candidate["slices"].items():
        old = deployed["slices"].get(name)
        if old is not None and old["auc"] - m["auc"] > MAX_SLICE_AUC_DROP:
            reasons.append(f"AUC of slice {name} fell {old['auc']:.3f} -> {m['auc']:.3f}")
    if reasons:
        return False, "; ".join(reasons)
    return True, f"overall AUC {candidate['overall']['auc']:.3f} >= {deployed['overall']['auc']:.3f}"


@step(inputs={"evaluation": "ModelEvaluation"}, outputs=["PushedModel"], pipeline=PIPELINE, type="Pusher")
def pusher(evaluation: Artifact) -> Artifact:
    """Deploy the evaluated model to the workspace's serving/ folder if it beats the one
    deployed (the newest PushedModel with pushed = true). Always returns a PushedModel
    saying what happened (TFX's ``pushed`` property)."""
    model_artifact = _by_id(str(evaluation.properties["model_id"].python()), "model")
    deployed = _lookup("PushedModel", "deployed", "properties.pushed = TRUE")
    serving_dir = _workspace(evaluation) / "serving"
    candidate = _read_json(evaluation)
    baseline = json.loads((Path(deployed.uri) / "evaluation.json").read_text()) if deployed else None
    pushed, reason = push_decision(candidate, baseline)
    tag = _tag(evaluation)
    target = Path(serving_dir) / (f"ctr-{tag}" if pushed else f"refused-{tag}")
    target.mkdir(parents=True, exist_ok=True)
    if pushed:
        shutil.copytree(model_artifact.uri, target / "model", dirs_exist_ok=True)
    _write_json(target / "evaluation.json", candidate)
    _write_json(target / "decision.json", {"pushed": pushed, "reason": reason})
    log_metrics({"pushed": 1.0 if pushed else 0.0})
    return Artifact(
        str(target), type="PushedModel", name="ctr-model",
        properties={"pushed": pushed, "reason": reason, "auc": candidate["overall"]["auc"]},
    )
