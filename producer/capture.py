"""What a tracked call captures besides its artifacts: parameters, code version, environment.

* Parameters: bound arguments made JSON-safe; large values summarised (arrays and frames
  -> shape/dtype, long strings truncated, long sequences -> length); ``self``/``cls`` and
  the caller's exclusions are left out.
* Code version: sha256 of the function's source (cached per function), the git commit of
  the enclosing repository and whether its tree is dirty (cached per repository; ``git``
  runs at most once per repository per process, with a timeout; the commit is read from
  ``.git`` directly).
* Environment: Python version, platform, host and versions of key packages (cached once
  per process).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from metatrail.schemas.events import CodeVersion, Environment

MAX_STRING_CHARS = 1_000
MAX_ITEMS = 50
MAX_DEPTH = 4
GIT_TIMEOUT_S = 2.0
KEY_PACKAGES = ("numpy", "pandas", "torch", "keras", "tensorflow", "scikit-learn", "metatrail")

_SCALARS = (bool, int, float, str, type(None))


def summarise(value: Any, depth: int = 0) -> Any:
    """A JSON-safe stand-in for ``value`` that stays small (see module doc)."""
    if isinstance(value, _SCALARS):
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            return value[:MAX_STRING_CHARS] + f"...[{len(value)} chars]"
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value
    shape = getattr(value, "shape", None)
    if shape is not None and (hasattr(value, "dtype") or hasattr(value, "dtypes")):
        try:
            return {
                "type": type(value).__name__,
                "shape": [int(s) for s in shape],
                "dtype": str(getattr(value, "dtype", "mixed")),
            }
        except (TypeError, ValueError):
            pass
    if depth >= MAX_DEPTH:
        return f"<{type(value).__name__}>"
    if isinstance(value, (list, tuple, set, frozenset)):
        if len(value) > MAX_ITEMS:
            return {"type": type(value).__name__, "len": len(value)}
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [summarise(v, depth + 1) for v in items]
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            return {"type": "dict", "len": len(value)}
        return {str(k): summarise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


# --- code version -------------------------------------------------------------------------

_SOURCE_HASHES: dict[Any, str | None] = {}


def source_hash(fn: Callable[..., Any]) -> str | None:
    """sha256 of ``fn``'s source text (cached per function); ``None`` if unavailable."""
    code = getattr(fn, "__code__", fn)
    if code in _SOURCE_HASHES:
        return _SOURCE_HASHES[code]
    try:
        digest: str | None = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
    except (OSError, TypeError):
        digest = None
    _SOURCE_HASHES[code] = digest
    return digest


def code_version(fn: Callable[..., Any]) -> CodeVersion:
    """Source hash, git commit/dirty flag of the repository holding ``fn``, module, qualname."""
    commit: str | None = None
    dirty: bool | None = None
    try:
        filename = inspect.getsourcefile(fn)
    except TypeError:
        filename = None
    if filename:
        repo = _enclosing_repo(str(Path(filename).resolve().parent))
        if repo is not None:
            commit, dirty = _git_state(repo)
    return CodeVersion(
        source_hash=source_hash(fn),
        git_commit=commit,
        git_dirty=dirty,
        module=getattr(fn, "__module__", None),
        qualname=getattr(fn, "__qualname__", None),
    )


@lru_cache(maxsize=256)
def _enclosing_repo(directory: str) -> str | None:
    for folder in (Path(directory), *Path(directory).parents):
        if (folder / ".git").exists():
            return str(folder)
    return None


_GIT_LOCK = threading.Lock()
_GIT_STATE: dict[str, tuple[str | None, bool | None]] = {}


def _git_state(repo: str) -> tuple[str | None, bool | None]:
    with _GIT_LOCK:
        if repo not in _GIT_STATE:
            _GIT_STATE[repo] = (_read_head(Path(repo)), _is_dirty(repo))
        return _GIT_STATE[repo]


def _read_head(repo: Path) -> str | None:
    """The commit HEAD points to, read from ``.git`` (worktrees and packed refs included)."""
    try:
        git = repo / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (repo / git.read_text().split(":", 1)[1].strip()).resolve()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split(" ")
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, IndexError):
        return None
    return None


def _is_dirty(repo: str) -> bool | None:
    try:
        out = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


# --- environment --------------------------------------------------------------------------

_ENVIRONMENT: list[Environment] = []


def environment() -> Environment:
    """This interpreter's environment (computed once per process)."""
    if not _ENVIRONMENT:
        packages: dict[str, str] = {}
        for name in KEY_PACKAGES:
            try:
                packages[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        _ENVIRONMENT.append(
            Environment(
                python=platform.python_version(),
                platform=f"{sys.platform}-{platform.machine()}",
                host=socket.gethostname(),
                packages=packages,
            )
        )
    return _ENVIRONMENT[0]
