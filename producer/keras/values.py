"""The data given to ``fit`` / ``evaluate`` as INPUT artifacts.

Keras accepts many kinds of data (arrays, pandas objects, file paths, datasets, generators);
lineage needs an ``Artifact`` for each, with a content digest when one is cheap enough to
compute inside the training loop. What cannot be named or hashed is not recorded.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from metatrail.producer.artifacts import Artifact, Dataset

#: Arrays larger than this are recorded without a content digest (hashing would stall fit).
DEFAULT_MAX_DIGEST_BYTES = 256 << 20


def as_artifact(value: Any, role: str, max_digest_bytes: int) -> Artifact | None:
    """Data passed to fit as an artifact: Artifacts as they are, paths as files, objects
    with a name as named datasets, arrays by content digest. Anything else: ``None``."""
    if value is None:
        return None
    if isinstance(value, Artifact):
        return value
    attached = getattr(value, "metatrail_artifact", None)
    if isinstance(attached, Artifact):
        return attached
    if isinstance(value, (str, os.PathLike)):
        return Dataset(os.fspath(value), name=role)
    array = as_numpy(value)
    if array is not None:
        props = {"shape": list(array.shape), "dtype": str(array.dtype), "nbytes": int(array.nbytes)}
        if array.nbytes <= max_digest_bytes:
            digest = "sha256:" + hashlib.sha256(memoryview(array).cast("B")).hexdigest()
            return Dataset(f"memory://ndarray/{digest[7:23]}", digest=digest, name=role, properties=props)
        props["digest_skipped"] = f"{array.nbytes} bytes > {max_digest_bytes}"
        return Dataset(f"memory://ndarray/{role}", name=role, properties=props, compute_digest=False)
    name = getattr(value, "name", None)
    if isinstance(name, str) and name:
        return Dataset(f"dataset://{name}", name=name, compute_digest=False)
    return None


def as_numpy(value: Any) -> Any:
    """A contiguous numpy array of numpy arrays and of pandas objects (``to_numpy``)."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if not isinstance(value, np.ndarray):
        to_numpy = getattr(value, "to_numpy", None)
        if to_numpy is None or not hasattr(value, "shape"):
            return None
        value = to_numpy()
        if not isinstance(value, np.ndarray) or value.dtype == object:
            return None
    return np.ascontiguousarray(value)
