"""`pip install .` puts one top-level package in site-packages: lockzero (api, engine, … live under it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _source_copy(into: Path) -> Path:
    """What `pip install .` reads, copied: an in-tree build would leave build/ behind in the checkout."""
    into.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, into / name)
    for folder in ("api", "engine", "eventstore", "providers", "workers"):
        shutil.copytree(ROOT / folder, into / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def test_the_wheel_installs_only_the_lockzero_package(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = wheels.glob("lockzero-*.whl")
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "lockzero",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    assert "lockzero/engine/saga/rotation.py" in names
    assert any(n.startswith("lockzero/api/console/templates/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lockzero = lockzero.api.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    installed = {p.name for p in target.iterdir()} - {"bin"}
    assert installed == {"lockzero", dist_info}
    assert (target / "bin" / "lockzero").exists()
