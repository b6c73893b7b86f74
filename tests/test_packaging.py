"""The wheel must ship every subpackage: pyproject lists them explicitly (conf/ is mapped in)."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "lovaszseg").rglob("__init__.py")
    }
    assert found | {"lovaszseg.conf"} == listed
    assert config["package-dir"]["lovaszseg.conf"] == "conf"
