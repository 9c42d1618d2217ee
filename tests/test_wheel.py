"""The wheel stands alone: built from the sources, installed into a fresh virtualenv, it
records and reads back from a directory holding the user's own ``schemas.py``,
``consumer.py`` and ``producer.py`` — which stay the user's modules — and it carries
everything it needs (migrations, JSON Schema files, ``py.typed``) under one import name.

The dependencies come from this test environment's site-packages through a ``.pth`` file
(installing them from an index would take minutes); metatrail's own code comes from the
wheel only, which the script checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.py", "pyproject.toml", "README.md", "metatrail", "producer", "consumer", "schemas")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources git knows (a build writes into its source
    tree). package.json is left out: the web UI's third-party assets are fetched by npm at
    build time, which this test does without (it needs no network)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    tracked = subprocess.check_output(  # tracked, and new files git does not ignore
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *SOURCES], cwd=ROOT, text=True
    )
    for name in filter(None, tracked.split("\0")):
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():  # (a file deleted but not yet committed is skipped)
            shutil.copy2(ROOT / name, target)
    out = base / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("metatrail-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtualenv with the wheel installed; dependencies visible through a .pth."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    purelib = Path(
        subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    )
    ours = {str(ROOT)} | {str(ROOT / part) for part in ("producer", "consumer", "schemas", "metatrail")}
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir() and p not in ours]
    (purelib / "_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield home


USER_FILES = {
    # a FastAPI-style project: its own modules named like our three parts
    "schemas.py": "from pydantic import BaseModel\n\nclass Item(BaseModel):\n    name: str\n\nUSER = 'schemas'\n",
    "consumer.py": "USER = 'consumer'\n",
    "producer.py": "USER = 'producer'\n",
}

SCRIPT = """
import os, sys
from pathlib import Path

import metatrail
from metatrail import Dataset, Model, Store, flush, run, track

site = Path(sys.prefix).resolve()
for module in ("metatrail", "metatrail.producer", "metatrail.consumer", "metatrail.schemas"):
    where = Path(sys.modules[module].__file__).resolve()
    assert site in where.parents, (module, where)   # from the wheel, not the checkout

import schemas, consumer, producer                  # the user's own modules
for module in (schemas, consumer, producer):
    assert Path(module.__file__).resolve().parent == Path.cwd().resolve(), module.__file__
    assert module.USER == module.__name__
assert schemas.Item(name="x").name == "x"

@track
def train(data: Dataset, epochs: int = 2) -> Model:
    Path("models").mkdir(exist_ok=True)
    Path("models/m.txt").write_text("weights")
    return Model("models/m.txt")

Path("train.csv").write_text("a,b\\n1,2\\n")
with run("wheel-run", pipeline="wheel"):
    model = train(Dataset("train.csv"), epochs=3)
assert flush(60)

with Store.open("sqlite:///.metatrail/metadata.db") as store:
    [execution] = store.executions().items
    assert execution.state == "COMPLETE" and execution.name == "train", execution
    assert execution.properties["epochs"] == 3
    assert store.artifact(str(model.id)).digest == model.digest
print("recorded", execution.id)
"""


def test_the_wheel_installs_records_and_reads_back_beside_the_users_modules(fresh_venv: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name, text in USER_FILES.items():
        (project / name).write_text(text)
    (project / "main.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METATRAIL_", "PYTHON"))}
    done = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "main.py"], cwd=project, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("recorded ")
    # the console script comes from the wheel too
    cli = subprocess.run(
        [str(fresh_venv / "bin" / "metatrail"), "--help"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 0, cli.stderr


def test_the_wheel_holds_one_top_level_name_and_its_data_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert top == {"metatrail", f"metatrail-{version}.dist-info"}
    files = set(names)
    migrations = "metatrail/consumer/store/migrations/"
    assert {migrations + "env.py", migrations + "script.py.mako"} <= files
    versions = {n.rsplit("/", 1)[1] for n in names if n.startswith(migrations + "versions/") and n.endswith(".py")}
    assert versions == {p.name for p in (ROOT / "consumer/store/migrations/versions").glob("*.py")}
    schemas = {n.rsplit("/", 1)[1] for n in names if n.startswith("metatrail/schemas/json/")}
    assert schemas and schemas == {p.name for p in (ROOT / "schemas/json").glob("*.json")}
    for package in ("metatrail", "metatrail/producer", "metatrail/consumer", "metatrail/schemas"):
        assert f"{package}/py.typed" in files
    assert not [n for n in names if "__pycache__" in n or n.startswith("metatrail/tests")]
