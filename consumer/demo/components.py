"""The demo pipeline's components, TFX-style, as cached ``@track``-ed functions.

ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer -> Evaluator ->
Pusher, for an online shoe retailer's click-through-rate model. Each component reads its
input artifacts' files and returns output artifacts whose files live under the demo's
workspace; metatrail records every call (inputs, outputs, parameters, code version) and
serves a repeated call with the same inputs, parameters and code from its cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from consumer.demo import analysis, data, model
from producer import Artifact, log_metrics, track

PIPELINE = "shoe-ctr"
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


def _out(artifact: Artifact, folder: str) -> Path:
    """Outputs go under the workspace of the input they derive from, named by the input's
    digest, so the same inputs always produce the same paths."""
    uri = Path(artifact.uri).resolve()
    workspace = next((p for p in uri.parents if (p / WORKSPACE_MARKER).exists()), uri.parent)
    return workspace / folder / _tag(artifact)


@track(type="ExampleGen", cache=True)
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


@track(type="StatisticsGen", cache=True)
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


@track(type="SchemaGen", cache=True)
def schema_gen(feature_spec: Artifact) -> Artifact:
    """The schema (domains, presence, drift comparators) from the catalog's feature spec."""
    schema = analysis.infer_schema(_read_json(feature_spec))
    path = _out(feature_spec, "schema") / "schema.json"
    _write_json(path, schema)
    return Artifact(str(path), type="Schema", name="ctr-schema", properties={"features": len(schema["features"])})


@track(type="ExampleValidator", cache=True)
def example_validator(statistics: Artifact, schema: Artifact, baseline: Artifact | None = None) -> Artifact:
    """Anomalies of the statistics against the schema, and drift against ``baseline`` (the
    previous run's statistics)."""
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


@track(type="Trainer", cache=True)
def trainer(examples: Artifact, schema: Artifact, epochs: int = 6, framework: str = "numpy") -> Artifact:
    """Train the click-through model on the train split (Keras or numpy)."""
    train = data.read_csv(Path(examples.uri) / "train.csv")
    enc = model.encoder_from_schema(_read_json(schema), train)
    x, y = model.encode(train, enc), train.clicked.astype(np.float32)
    folder = _out(examples, "models") / f"{framework}-e{epochs}-{_tag(schema)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.json").write_text(json.dumps(enc, sort_keys=True))
    if framework == "keras":
        model.import_keras()  # picks a backend before anything imports keras
        from producer.keras import MetadataCallback

        model.train_keras(x, y, folder / "model.keras", epochs, [MetadataCallback(log_model=False)])
    else:
        params = model.train_numpy(x, y.astype(np.float64), iterations=2 * epochs)
        (folder / "model.json").write_text(json.dumps(params))
    return Artifact(str(folder), type="Model", name="ctr-model", properties={"framework": framework})


def _model_file(folder: Path) -> Path:
    return folder / "model.keras" if (folder / "model.keras").exists() else folder / "model.json"


@track(type="Evaluator", cache=True)
def evaluator(model_artifact: Artifact, examples: Artifact) -> Artifact:
    """AUC and accuracy on the eval split, overall and per product category."""
    folder = Path(model_artifact.uri)
    rows = data.read_csv(Path(examples.uri) / "eval.csv")
    enc = json.loads((folder / "encoder.json").read_text())
    result = model.evaluate(rows, model.predict(_model_file(folder), model.encode(rows, enc)))
    metrics = {"auc": result["overall"]["auc"], "accuracy": result["overall"]["accuracy"]}
    for name, m in result["slices"].items():
        metrics[f"auc/{name}"] = m["auc"]
        metrics[f"accuracy/{name}"] = m["accuracy"]
    log_metrics(metrics)
    path = _out(model_artifact, "evaluation") / f"on-{_tag(examples)}.json"
    _write_json(path, result)
    return Artifact(
        str(path), type="ModelEvaluation", name="evaluation",
        properties={"auc": result["overall"]["auc"], "accuracy": result["overall"]["accuracy"]},
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


@track(type="Pusher", cache=True)
def pusher(
    model_artifact: Artifact, evaluation: Artifact, serving_dir: str, deployed: Artifact | None = None
) -> Artifact:
    """Deploy the model to ``serving_dir`` if it beats the deployed one (``deployed``: the
    last PushedModel that was pushed). Always returns a PushedModel saying what happened."""
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
