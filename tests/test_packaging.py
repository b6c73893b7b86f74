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


def test_non_python_sources_ship_as_package_data():
    """Files the package reads at run time (the C kernel) must be declared, or wheels lack them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for source in (ROOT / "lovaszseg").rglob("*.c"):
        package = ".".join(source.parent.relative_to(ROOT).parts)
        assert source.name in config["package-data"].get(package, []), source
