"""Packaging: the ``evalkit`` library plus the task plugins of ``tasks/``, shipped as
``evalkit.tasks`` (one sub-package per benchmark family, found here so that adding a family
is adding a folder). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

FAMILIES = find_packages("tasks")

setup(
    packages=[
        *find_packages(include=["evalkit", "evalkit.*"]),
        "evalkit.tasks",
        *(f"evalkit.tasks.{family}" for family in FAMILIES),
    ],
    package_dir={"evalkit.tasks": "tasks"},
    package_data={
        "evalkit": ["assets/**/*", "py.typed"],
        **{f"evalkit.tasks.{family}": ["*.yaml"] for family in FAMILIES},
    },
)
