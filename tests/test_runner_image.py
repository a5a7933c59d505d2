"""The runner image's install step, without a Docker engine: build the package from exactly the files
the Dockerfile copies, and check the wheel holds every entry point's module and the package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path

from kaizen_local.runnerimage import copied_paths

ROOT = Path(__file__).resolve().parents[1]


def test_package_builds_from_what_the_dockerfile_copies(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for source in copied_paths():
        origin = ROOT / source
        assert origin.exists(), f"Dockerfile copies {source}, which does not exist"
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, target)

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cannot be found" not in done.stderr, done.stderr[-3000:]

    [wheel] = tmp_path.glob("kaizen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points_name] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = ConfigParser()
        entry_points.read_string(archive.read(entry_points_name).decode())
    scripts = dict(entry_points["console_scripts"])
    assert "kaizen-runner" in scripts
    for script, target in scripts.items():
        module = target.split(":")[0].replace(".", "/") + ".py"
        assert module in names, f"{script} points at {module}, which the image would not have"
    assert "kaizen_runner/train/chatml_training.jinja" in names
