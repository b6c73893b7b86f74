"""The wheel must ship every subpackage: pyproject lists them explicitly (conf/ is mapped in)."""

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "conf").rglob("*.yaml"))


def test_every_subpackage_and_config_group_is_listed_in_pyproject():
    """A folder of configs that is not a listed package makes setuptools warn ("Package would be
    ignored") on every install and may leave its YAML out of the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "lovaszseg").rglob("__init__.py")
    }
    groups = {
        ".".join(("lovaszseg", *yaml.parent.relative_to(ROOT).parts)) for yaml in CONFIGS
    }
    assert "lovaszseg.conf.loss" in groups and "lovaszseg.conf.hydra.launcher" in groups
    assert sorted(found | groups) == sorted(listed)
    assert config["package-dir"]["lovaszseg.conf"] == "conf"


def test_non_python_sources_ship_as_package_data():
    """Files the package reads at run time (the C kernel) must be declared, or wheels lack them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for source in (ROOT / "lovaszseg").rglob("*.c"):
        package = ".".join(source.parent.relative_to(ROOT).parts)
        assert source.name in config["package-data"].get(package, []), source


def _distribution_tops(name: str, seen: set) -> set:
    """Top-level files and folders of distribution ``name`` and of everything it requires (no
    extras), in this environment."""
    import importlib.metadata as md
    import re

    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return set()
    seen.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return set()
    tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    for requirement in dist.requires or ():
        if "extra ==" in requirement:
            continue
        if ";" in requirement and not _marker_holds(requirement.split(";", 1)[1]):
            continue
        tops |= _distribution_tops(re.split(r"[ <>=!~;\[(]", requirement, maxsplit=1)[0], seen)
    return tops


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate({"extra": ""})


@pytest.fixture(scope="module")
def torch_only_venv(tmp_path_factory):
    """A fresh venv that sees PyTorch (and what it requires) and nothing else of this one's,
    with this project's wheel installed in it: ``(python, wheel)``."""
    import site
    import subprocess
    import sys
    import venv

    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: the build writes build/ and *.egg-info next to it
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("lovaszseg", "conf"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".so":
                target = source / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "BuildBackendWarning" not in built.stderr, built.stderr[:3000]
    (wheel,) = (root / "dist").glob("*.whl")

    venv.EnvBuilder(with_pip=False).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shared = root / "torch-only"
    shared.mkdir()
    here = Path(site.getsitepackages()[0])
    for top in _distribution_tops("torch", set()):
        if (here / top).exists():
            (shared / top).symlink_to(here / top)
    Path(purelib, "torch-only.pth").write_text(f"{shared}\n")
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python, wheel


_STANDALONE = """
import importlib.util, json, torch
from lovaszseg.losses import LovaszHingeLoss, LovaszSoftmaxLoss, native
x = torch.randn(2, 4, 16, 16, requires_grad=True)
loss = LovaszSoftmaxLoss()(x, torch.randint(0, 4, (2, 16, 16)))
loss.backward()
hinge = LovaszHingeLoss()(torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8)))
lib = native.library()
print(json.dumps({
    "loss": loss.item(), "grad": float(x.grad.abs().sum()), "hinge": hinge.item(),
    "kernel": None if lib is None else str(lib.path), "variant": lib and lib.variant,
    "framework": [m for m in ("lightning", "pytorch_lightning", "hydra", "omegaconf",
                  "segmentation_models_pytorch", "albumentations") if importlib.util.find_spec(m)],
}))
"""


def test_the_wheel_carries_the_kernel_and_the_losses_need_only_torch(torch_only_venv, tmp_path):
    """Installed from the platform wheel into a venv with PyTorch alone and no C compiler (CC
    points nowhere, nothing on PATH to build with): the losses run, through the wheel's kernel."""
    import json
    import subprocess
    import zipfile

    python, wheel = torch_only_venv
    assert not wheel.name.endswith("-any.whl")  # a platform wheel
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith("METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert any(n.startswith("lovaszseg/losses/_lovasz_openmp") for n in names)
    shipped = {n for n in names if n.startswith("lovaszseg/conf/") and n.endswith(".yaml")}
    assert len(CONFIGS) > 60
    assert shipped == {f"lovaszseg/{c.relative_to(ROOT).as_posix()}" for c in CONFIGS}
    assert [r for r in requires if "extra ==" not in r] == ["torch>=2.4"]
    env = {
        "PATH": str(tmp_path),  # no cc, gcc or clang
        "CC": "/nonexistent/cc",
        "LOVASZSEG_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [python, "-W", "error::RuntimeWarning", "-c", _STANDALONE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["framework"] == []
    assert out["variant"] == "openmp" and "site-packages" in out["kernel"]
    assert not (tmp_path / "cache").exists()  # nothing was compiled
    assert out["loss"] > 0 and out["grad"] > 0 and out["hinge"] > 0


def test_the_losses_package_imports_nothing_of_the_framework():
    """``lovaszseg.losses`` is a library of its own: torch and its own modules only."""
    import ast

    for source in (ROOT / "lovaszseg" / "losses").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "lovaszseg", f"{source.name} imports {name}"
                assert top not in {
                    "lightning",
                    "pytorch_lightning",
                    "hydra",
                    "omegaconf",
                    "segmentation_models_pytorch",
                    "albumentations",
                    "numpy",
                }, f"{source.name} imports {name}"
