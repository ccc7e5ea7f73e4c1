"""Install the top-level folders the design names as one import namespace: ``lockzero.api``, ``lockzero.engine``, …

The folders stay where readers expect them (api/, engine/, …); only their installed names change, so nothing
called ``api`` or ``engine`` lands at the top of site-packages. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

FOLDERS = ("api", "engine", "eventstore", "providers", "workers")

setup(
    package_dir={f"lockzero.{folder}": folder for folder in FOLDERS},
    packages=[
        f"lockzero.{folder}{'.' + sub if sub else ''}"
        for folder in FOLDERS
        # Namespace discovery also lists data folders (console templates and static files) as packages,
        # which is how setuptools wants package data declared.
        for sub in ["", *find_namespace_packages(where=folder, exclude=["*__pycache__*"])]
    ],
)
