"""An installed wheel holds every file the packages need at run time, not only their code:
templates, static files (the browser SDK) and the protocol's JSON Schema."""

from __future__ import annotations

import glob
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_dirs() -> list[Path]:
    """Every package and subpackage setuptools finds with the project's include patterns."""
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = [ROOT / pattern.rstrip("*") for pattern in found]
    return [init.parent for top in tops for init in top.rglob("__init__.py")]


def data_files() -> set[Path]:
    """The files in the packages that are not code (nor caches)."""
    files: set[Path] = set()
    tops = {d for d in package_dirs() if not (d.parent / "__init__.py").exists()}
    for top in tops:
        for path in top.rglob("*"):
            if (
                path.is_file()
                and path.suffix not in (".py", ".pyc")
                and "__pycache__" not in path.parts
            ):
                files.add(path)
    return files


def shipped_by_package_data() -> set[Path]:
    """What `[tool.setuptools.package-data]` adds: its "*" patterns, in every package."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    shipped: set[Path] = set()
    for package in package_dirs():
        for pattern in patterns:
            matches = glob.glob(pattern, root_dir=package, recursive=True)
            shipped |= {package / m for m in matches if (package / m).is_file()}
    return shipped


def test_every_data_file_of_the_packages_is_in_the_wheel():
    files = data_files()
    # The ones that matter at run time are there to be checked at all.
    assert ROOT / "sessions" / "protocol.schema.json" in files
    assert any(f.suffix == ".html" for f in files)
    assert any(f.suffix == ".js" for f in files)
    missing = sorted(str(f.relative_to(ROOT)) for f in files - shipped_by_package_data())
    assert missing == [], f"add these to [tool.setuptools.package-data]: {missing}"
