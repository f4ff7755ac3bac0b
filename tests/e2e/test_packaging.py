"""The wheel: built from this tree, installed into a fresh venv, `hpstudy --help` runs from elsewhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    source = tmp_path / "source"  # build a copy: setuptools writes build/ next to the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "*.db", ".pytest_cache", "data"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = dist.glob("hpstudy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("study", "search_spaces", "storage", "reports"):
        assert f"hpstudy/{package}/__init__.py" in names
    assert not any(name.startswith(("study/", "storage/", "reports/", "search_spaces/", "tests/")) for name in names)
    assert not any(name == "hpstudy/__init__.py" for name in names), "hpstudy stays a namespace"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([str(env_dir / "bin" / "hpstudy"), "--help"], cwd=elsewhere,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: hpstudy" in result.stdout and "run" in result.stdout
    where = subprocess.run([str(python), "-c", "import hpstudy.study.cli as m; print(m.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, timeout=120, check=True)
    assert str(env_dir) in where.stdout, "the wheel's copy is the one imported"
    assert list(elsewhere.iterdir()) == []
