"""The wheel: built from this tree, installed into a fresh venv, `hpstudy --help` runs from elsewhere.
The dependencies: bounded in pyproject.toml, installed within their ranges, pinned in .ci/constraints.txt."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
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


def _declared_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"] + project["optional-dependencies"]["dev"]]


def _constraints() -> dict[str, Requirement]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def test_every_dependency_is_bounded_installed_within_its_range_and_pinned_for_ci():
    pins = _constraints()
    direct = []
    problems = []
    for requirement in _declared_dependencies():
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier):
            problems.append(f"{requirement}: no upper bound in pyproject.toml")
        direct.append(requirement)
        for extra in requirement.extras:  # psycopg[binary] brings psycopg-binary: pinned as well
            brought = [Requirement(line) for line in metadata.requires(requirement.name) or []]
            direct += [r for r in brought if r.marker and r.marker.evaluate({"extra": extra})]
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement}: not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement}: installed {installed} is outside the range")
        pin = pins.get(name)
        specs = list(pin.specifier) if pin else []
        if not (len(specs) == 1 and specs[0].operator == "==" and not specs[0].version.endswith(".*")
                and specs[0].contains(installed, prereleases=True)):
            problems.append(f"{name}: installed {installed}, .ci/constraints.txt has {pin or 'no line'}")
    assert not problems, "\n".join(problems)
