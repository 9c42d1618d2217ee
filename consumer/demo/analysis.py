"""Statistics, schema and anomaly detection of the demo pipeline (TFDV in miniature).

Statistics are plain JSON: per feature counts, missing values, mean / stddev / min / max,
a quantile sketch and a histogram for numbers; frequencies and top values for categories;
the same again per slice (product category). Drift against a baseline is the L-infinity
distance of category frequencies, and the Jensen-Shannon divergence of numeric
distributions rebuilt from the two quantile sketches, as TFDV compares them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metatrail.consumer.demo.data import BRANDS, CATEGORIES, DEVICES, PRICE_MAX, PRICE_MIN, Impressions

NUMERIC = ("price", "position", "clicked")
CATEGORICAL = ("product_category", "brand", "device")
SLICE_FEATURE = "product_category"
QUANTILES = np.linspace(0.0, 1.0, 21)
#: Drift thresholds (TFDV defaults to L-infinity 0.1 for categories).
LINF_THRESHOLD = 0.1
JS_THRESHOLD = 0.1


def feature_spec() -> dict[str, Any]:
    """The catalog's description of the features: the pipeline's unchanging configuration."""
    brands = sorted({b for names in BRANDS.values() for b in names})
    return {
        "label": "clicked",
        "slice_by": SLICE_FEATURE,
        "features": {
            "product_category": {"kind": "categorical", "vocabulary": list(CATEGORIES)},
            "brand": {"kind": "categorical", "vocabulary": brands},
            "device": {"kind": "categorical", "vocabulary": list(DEVICES)},
            "price": {"kind": "numeric", "min": PRICE_MIN, "max": PRICE_MAX, "max_missing_fraction": 0.01},
            "position": {"kind": "numeric", "min": 1, "max": 24},
            "clicked": {"kind": "numeric", "min": 0, "max": 1},
        },
    }


def infer_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """The schema the validator enforces: domains, presence and drift comparators."""
    features: dict[str, Any] = {}
    for name, f in spec["features"].items():
        entry: dict[str, Any] = {"kind": f["kind"], "required": True}
        entry["max_missing_fraction"] = float(f.get("max_missing_fraction", 0.0))
        if f["kind"] == "categorical":
            entry["domain"] = list(f["vocabulary"])
            entry["drift_comparator"] = {"linf_threshold": LINF_THRESHOLD}
        else:
            entry["range"] = [f["min"], f["max"]]
            entry["drift_comparator"] = {"js_threshold": JS_THRESHOLD}
        features[name] = entry
    return {"version": 1, "label": spec["label"], "slice_by": spec["slice_by"], "features": features}


def _column(data: Impressions, name: str) -> np.ndarray:
    return {
        "price": data.price,
        "position": data.position,
        "clicked": data.clicked,
        "product_category": data.category,
        "brand": data.brand,
        "device": data.device,
    }[name]


def _numeric(values: np.ndarray) -> dict[str, Any]:
    v = values.astype(np.float64)
    present = v[~np.isnan(v)]
    out: dict[str, Any] = {"kind": "numeric", "count": int(v.size), "missing": int(v.size - present.size)}
    if present.size:
        counts, edges = np.histogram(present, bins=10)
        out.update(
            mean=float(present.mean()),
            stddev=float(present.std()),
            min=float(present.min()),
            max=float(present.max()),
            quantiles=[float(q) for q in np.quantile(present, QUANTILES)],
            histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        )
    return out


def _categorical(values: np.ndarray) -> dict[str, Any]:
    names, counts = np.unique(values.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    total = int(values.size)
    return {
        "kind": "categorical",
        "count": total,
        "missing": 0,
        "unique": int(names.size),
        "top_values": [[str(names[i]), int(counts[i])] for i in order[:10]],
        "frequencies": {str(n): int(c) / total for n, c in zip(names, counts)},
    }


def compute_statistics(data: Impressions) -> dict[str, Any]:
    """Statistics of every feature, overall and per slice."""

    def features_of(part: Impressions) -> dict[str, Any]:
        feats = {n: _numeric(_column(part, n)) for n in NUMERIC}
        feats.update({n: _categorical(_column(part, n)) for n in CATEGORICAL})
        return feats

    slices = {}
    for cat in sorted(set(data.category.tolist())):
        part = data.take(data.category == cat)
        slices[f"{SLICE_FEATURE}={cat}"] = {"num_examples": len(part), "features": features_of(part)}
    return {"num_examples": len(data), "features": features_of(data), "slices": slices}


def js_divergence(q_a: list[float], q_b: list[float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two distributions given by quantile
    sketches at the same probabilities, with linear interpolation between the points."""
    grid = np.unique(np.concatenate([q_a, q_b]))
    if grid.size < 2:
        return 0.0
    p = np.diff(np.interp(grid, q_a, QUANTILES, left=0.0, right=1.0))
    q = np.diff(np.interp(grid, q_b, QUANTILES, left=0.0, right=1.0))
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(max(0.0, min(1.0, (kl_p + kl_q) / 2)))


def linf_distance(f_a: dict[str, float], f_b: dict[str, float]) -> float:
    """L-infinity distance of two category frequency maps."""
    keys = set(f_a) | set(f_b)
    return max((abs(f_a.get(k, 0.0) - f_b.get(k, 0.0)) for k in keys), default=0.0)


def _anomaly(kind: str, feature: str, where: str, description: str, **detail: Any) -> dict[str, Any]:
    return {"kind": kind, "feature": feature, "slice": where, "description": description, **detail}


def _check_features(feats: dict[str, Any], schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name, rule in schema["features"].items():
        st = feats.get(name)
        if st is None:
            found.append(_anomaly("missing_feature", name, where, f"feature {name} is absent"))
            continue
        fraction = st["missing"] / st["count"] if st["count"] else 0.0
        if fraction > rule["max_missing_fraction"]:
            found.append(
                _anomaly(
                    "missing_values", name, where,
                    f"{fraction:.2%} of {name} missing (allowed {rule['max_missing_fraction']:.2%})",
                    value=fraction,
                )
            )
        if rule["kind"] == "numeric" and "min" in st:
            low, high = rule["range"]
            if st["min"] < low or st["max"] > high:
                found.append(
                    _anomaly(
                        "out_of_range", name, where,
                        f"{name} spans [{st['min']:g}, {st['max']:g}], outside [{low:g}, {high:g}]",
                    )
                )
        if rule["kind"] == "categorical":
            new = sorted(set(st["frequencies"]) - set(rule["domain"]))
            if new:
                found.append(
                    _anomaly("new_category", name, where, f"{name} has values not in the schema: {new}", values=new)
                )
    return found


def _drift(feats: dict[str, Any], base: dict[str, Any], schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name, rule in schema["features"].items():
        a, b = base.get(name), feats.get(name)
        if not a or not b or name == schema["label"]:
            continue
        if rule["kind"] == "categorical":
            dist, limit, measure = linf_distance(a["frequencies"], b["frequencies"]), LINF_THRESHOLD, "L-infinity"
        elif "quantiles" in a and "quantiles" in b:
            dist, limit, measure = js_divergence(a["quantiles"], b["quantiles"]), JS_THRESHOLD, "Jensen-Shannon"
        else:
            continue
        if dist > limit:
            found.append(
                _anomaly(
                    "distribution_drift", name, where,
                    f"{name} drifted: {measure} {dist:.3f} > {limit}",
                    measure=measure, value=round(dist, 4), threshold=limit,
                )
            )
    return found


def validate(
    stats: dict[str, Any], schema: dict[str, Any], baseline: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Anomalies of ``stats`` against the schema, and drift against ``baseline`` statistics
    (the previous run's), overall and per slice."""
    found = _check_features(stats["features"], schema, "all")
    if baseline is not None:
        found += _drift(stats["features"], baseline["features"], schema, "all")
        for where, part in stats["slices"].items():
            base = baseline["slices"].get(where)
            if base is not None:
                found += _drift(part["features"], base["features"], schema, where)
    return found
