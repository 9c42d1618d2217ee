"""Package layout: the top-level folders install under the one import name ``metatrail``.

``producer/``, ``consumer/`` and ``schemas/`` stay at the top of the repository and become
``metatrail.producer``, ``metatrail.consumer`` and ``metatrail.schemas``; ``metatrail/``
holds the public facade. Nothing else reaches the top of site-packages. Everything else
about the project is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

PARTS = ("schemas", "producer", "consumer")

package_dir = {"metatrail": "metatrail", **{f"metatrail.{part}": part for part in PARTS}}
packages = ["metatrail"] + [
    f"metatrail.{name}"
    for name in find_namespace_packages(include=[f"{part}*" for part in PARTS])
    if "__pycache__" not in name
]

setup(package_dir=package_dir, packages=packages)
