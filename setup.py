"""Package layout and the web UI's third-party assets.

Layout: ``producer/``, ``consumer/`` and ``schemas/`` stay at the top of the repository and
install as ``metatrail.producer``, ``metatrail.consumer`` and ``metatrail.schemas``;
``metatrail/`` holds the public facade. Nothing else reaches the top of site-packages.

Assets: the UI's browser libraries (cytoscape.js, cytoscape-dagre, uPlot, htmx) are npm
dependencies pinned in package.json and package-lock.json. Building the package (a wheel,
or an editable install) runs ``npm ci`` when npm is present and copies the files named in
package.json's ``metatrail.vendor`` into the package's static folder, which git ignores; a
wheel carries them, so installing a wheel needs no Node. Without npm the build goes on and
the server serves its API; the UI page then says what to run. Everything else about the
project is in pyproject.toml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PARTS = ("schemas", "producer", "consumer")
MANIFEST = ROOT / "package.json"


def bundle_web_assets() -> None:
    """``npm ci`` (when node_modules is missing or older than the lockfile), then copy the
    vendor files into the static folder. Quiet no-op without npm or package.json."""
    npm = shutil.which("npm")
    if not MANIFEST.exists():
        return
    manifest = json.loads(MANIFEST.read_text())["metatrail"]
    target = ROOT / manifest["vendorDir"]
    sources = {name: ROOT / src for name, src in manifest["vendor"].items()}
    if npm is None:
        if not all((target / name).exists() for name in sources):
            print("metatrail: npm not found; the web UI's assets are not bundled (the API works)")
        return
    lock = ROOT / "package-lock.json"
    stamp = ROOT / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ROOT, check=True
        )
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        shutil.copyfile(source, target / name)


class BuildWithAssets(build_py):
    """``build_py`` that bundles the web assets first (as JupyterLab extensions do)."""

    def run(self) -> None:
        bundle_web_assets()
        super().run()


# The vendor folder exists before packages are found (empty until the assets are copied), so
# a first build from a fresh clone ships it like any later build.
if MANIFEST.exists():
    (ROOT / json.loads(MANIFEST.read_text())["metatrail"]["vendorDir"]).mkdir(parents=True, exist_ok=True)

package_dir = {"metatrail": "metatrail", **{f"metatrail.{part}": part for part in PARTS}}
packages = ["metatrail"] + [
    f"metatrail.{name}"
    for name in find_namespace_packages(include=[f"{part}*" for part in PARTS])
    if "__pycache__" not in name and "node_modules" not in name
]

setup(package_dir=package_dir, packages=packages, cmdclass={"build_py": BuildWithAssets})
