"""scripts/setup.sh, run against a stand-in venv whose python records what pip was asked to do:
the PyTorch index a CPU-only user sets reaches pip, the default asks PyPI alone, and the
refusals name what to change. Nothing is downloaded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# Records its arguments, one call a line; fails a pip install from another index when asked to.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/calls.log"
if [ -n "${FAIL_INDEX:-}" ] && [[ " $* " == *" --index-url "* ]]; then exit 1; fi
"""


def _fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return venv


def _setup(venv: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "LOVASZSEG_TORCH_INDEX"}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        env=environment | {"LOVASZSEG_VENV": str(venv)} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _calls(venv: Path) -> list[str]:
    log = venv / "bin" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_torch_index_reaches_pip_before_the_project_is_installed(tmp_path):
    venv = _fake_venv(tmp_path)
    done = _setup(venv, LOVASZSEG_TORCH_INDEX=CPU_INDEX)
    assert done.returncode == 0, done.stderr
    assert _calls(venv) == [
        "-m pip install --quiet --upgrade pip",
        f"-m pip install --quiet --index-url {CPU_INDEX} torch torchvision",
        "-m pip install --quiet -e .[dev]",
    ]
    assert _setup(venv, LOVASZSEG_TORCH_INDEX=CPU_INDEX).returncode == 0
    assert len(_calls(venv)) == 3  # nothing changed: nothing installed again


def test_by_default_everything_comes_from_pypi(tmp_path):
    venv = _fake_venv(tmp_path)
    done = _setup(venv)
    assert done.returncode == 0, done.stderr
    assert _calls(venv) == [
        "-m pip install --quiet --upgrade pip",
        "-m pip install --quiet -e .[dev]",
    ]
    stamp = (venv / ".lovaszseg-installed").read_text()
    assert stamp == (ROOT / "pyproject.toml").read_text()


def test_setting_the_index_on_an_installed_venv_installs_again(tmp_path):
    venv = _fake_venv(tmp_path)
    assert _setup(venv).returncode == 0
    assert _setup(venv, LOVASZSEG_TORCH_INDEX=CPU_INDEX).returncode == 0
    assert any("--index-url" in call for call in _calls(venv)[2:])


def test_an_unreachable_index_stops_naming_the_variable_and_the_default(tmp_path):
    venv = _fake_venv(tmp_path)
    done = _setup(venv, LOVASZSEG_TORCH_INDEX="file:///nonexistent/index", FAIL_INDEX="1")
    assert done.returncode == 1
    assert "LOVASZSEG_TORCH_INDEX=file:///nonexistent/index" in done.stderr
    assert "unset LOVASZSEG_TORCH_INDEX" in done.stderr
    assert not any("-e .[dev]" in call for call in _calls(venv))
    assert not (venv / ".lovaszseg-installed").exists()


def test_a_python_older_than_3_11_is_refused_by_name(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text("#!/usr/bin/env bash\n[ \"$1\" = --version ] && echo 'Python 3.10.14'\nexit 1\n")
    old.chmod(0o755)
    done = _setup(tmp_path / "new-venv", PYTHON=str(old))
    assert done.returncode == 1
    assert "needs Python 3.11 or newer" in done.stderr and "Python 3.10.14" in done.stderr
    assert not (tmp_path / "new-venv").exists()
