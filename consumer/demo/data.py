"""Synthetic impressions of an online shoe retailer, deterministic per (day, seed).

One row is one product shown to a visitor: product category, brand, price, the position
on the page, the device, the day, and whether it was clicked. Day 2 drifts one slice, men's
dress shoes: a new luxury brand appears, prices move up, and clicks follow a promotion the
features do not show — so a model's ranking quality falls for that slice only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CATEGORIES = ("running", "sneakers", "mens_dress", "womens_heels", "boots", "sandals")
DEVICES = ("mobile", "desktop", "tablet")
#: Brands each category is sold under (the catalog the feature spec is built from).
BRANDS = {
    "running": ("Stride", "Aero", "Trailhead"),
    "sneakers": ("Aero", "Urbano", "Stride"),
    "mens_dress": ("Oxford & Co", "Bellamy", "Whitlock"),
    "womens_heels": ("Velour", "Bellamy", "Rosalind"),
    "boots": ("Trailhead", "Whitlock", "Northpeak"),
    "sandals": ("Sunstep", "Aero", "Velour"),
}
#: Median price per category (EUR).
PRICE_MEDIAN = {
    "running": 110.0,
    "sneakers": 85.0,
    "mens_dress": 160.0,
    "womens_heels": 120.0,
    "boots": 140.0,
    "sandals": 45.0,
}
BASE_LOGIT = {
    "running": -1.4,
    "sneakers": -1.2,
    "mens_dress": -1.7,
    "womens_heels": -1.5,
    "boots": -1.6,
    "sandals": -1.3,
}
DRIFTED_CATEGORY = "mens_dress"
NEW_BRAND = "Maison Noir"
COLUMNS = ("impression_id", "day", "product_category", "brand", "price", "position", "device", "clicked")
PRICE_MIN, PRICE_MAX = 5.0, 1000.0


@dataclass(frozen=True)
class Impressions:
    """Columns of a day's impressions; ``price`` is NaN where it was not logged."""

    day: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    position: np.ndarray
    device: np.ndarray
    clicked: np.ndarray

    def __len__(self) -> int:
        return int(self.clicked.shape[0])

    def take(self, mask: np.ndarray) -> Impressions:
        return Impressions(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def generate(day: int, rows: int = 20_000, seed: int = 7, drift: bool | None = None) -> Impressions:
    """A day's impressions. Same arguments, same rows. ``drift`` defaults to ``day >= 2``."""
    drift = day >= 2 if drift is None else drift
    rng = np.random.default_rng([seed, day])
    category = rng.choice(np.array(CATEGORIES), size=rows, p=[0.22, 0.22, 0.14, 0.14, 0.16, 0.12])
    brand = np.empty(rows, dtype=object)
    price = np.empty(rows, dtype=np.float64)
    for cat in CATEGORIES:
        idx = np.flatnonzero(category == cat)
        brand[idx] = rng.choice(np.array(BRANDS[cat], dtype=object), size=idx.size)
        price[idx] = PRICE_MEDIAN[cat] * np.exp(rng.normal(0.0, 0.35, size=idx.size))
    position = rng.integers(1, 25, size=rows)
    device = rng.choice(np.array(DEVICES), size=rows, p=[0.6, 0.3, 0.1])
    rel_price = np.log(price / np.vectorize(PRICE_MEDIAN.get)(category))
    logit = (
        np.vectorize(BASE_LOGIT.get)(category)
        - 1.6 * rel_price
        - 0.11 * (position - 1)
        + np.where(device == "desktop", 0.35, 0.0)
        + np.where(np.isin(brand, ("Aero", "Bellamy", "Velour")), 0.4, 0.0)
    )
    if drift:
        idx = np.flatnonzero(category == DRIFTED_CATEGORY)
        new = rng.random(idx.size) < 0.45
        brand[idx[new]] = NEW_BRAND
        price[idx] *= np.where(new, 2.6, 1.35)
        # A promotion the features do not show drives this slice's clicks now.
        promo = rng.normal(0.0, 2.2, size=idx.size)
        logit[idx] = BASE_LOGIT[DRIFTED_CATEGORY] + 0.25 * (logit[idx] - BASE_LOGIT[DRIFTED_CATEGORY]) + promo
    clicked = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    price = np.round(price, 2)
    price[rng.random(rows) < 0.004] = np.nan  # a few impressions lose their price
    return Impressions(
        day=np.full(rows, day, dtype=np.int64),
        category=category.astype(object),
        brand=brand,
        price=price,
        position=position.astype(np.int64),
        device=device.astype(object),
        clicked=clicked,
    )


def write_csv(data: Impressions, path: Path) -> None:
    """Write ``data`` as CSV (an empty cell for a missing price). Byte-for-byte deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(len(data)):
            price = "" if np.isnan(data.price[i]) else f"{data.price[i]:.2f}"
            writer.writerow(
                (
                    f"d{data.day[i]}-{i:06d}",
                    int(data.day[i]),
                    data.category[i],
                    data.brand[i],
                    price,
                    int(data.position[i]),
                    data.device[i],
                    int(data.clicked[i]),
                )
            )


def read_csv(path: Path) -> Impressions:
    """Read a CSV written by :func:`write_csv`."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Impressions(
        day=np.array([int(r["day"]) for r in rows], dtype=np.int64),
        category=np.array([r["product_category"] for r in rows], dtype=object),
        brand=np.array([r["brand"] for r in rows], dtype=object),
        price=np.array([float(r["price"]) if r["price"] else np.nan for r in rows]),
        position=np.array([int(r["position"]) for r in rows], dtype=np.int64),
        device=np.array([r["device"] for r in rows], dtype=object),
        clicked=np.array([int(r["clicked"]) for r in rows], dtype=np.int64),
    )


def split_mask(rows: int, eval_fraction: float = 0.2, seed: int = 11) -> np.ndarray:
    """A deterministic boolean mask of the evaluation rows."""
    return np.random.default_rng(seed).random(rows) < eval_fraction
