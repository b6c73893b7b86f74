"""``--help`` and a refused config answer without loading torch, Lightning or the network library.

Importing them takes seconds on a small machine, so the entry modules import them inside the
functions that train, evaluate, predict or check, after the config checks. What a command really
imports is read from a fresh interpreter's ``-X importtime`` lines: one line per module loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = {"torch", "pytorch_lightning", "lightning_fabric", "segmentation_models_pytorch"}
LIGHTNING = {"pytorch_lightning", "lightning_fabric", "segmentation_models_pytorch"}


def modules_imported(app: str, cwd, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -m lovaszseg.<app> *args`` and the top-level names of every module it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"lovaszseg.{app}", *args],
        cwd=cwd, env=os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    _header, *imports = lines
    return proc, {line.rsplit("|", 1)[1].strip().split(".")[0] for line in imports}


def modules_imported_by_help(app: str, cwd) -> set[str]:
    proc, imported = modules_imported(app, cwd, "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"lovaszseg-{app}: "), proc.stdout[:500]
    return imported


def test_importtime_lines_name_what_was_imported(tmp_path):
    # guards the tests below, which an empty parse would pass: hydra composes the help
    assert {"hydra", "omegaconf", "lovaszseg"} <= modules_imported_by_help("check", tmp_path)


@pytest.mark.parametrize("app", ["train", "eval", "predict", "check"])
def test_help_loads_neither_torch_nor_lightning(app, tmp_path):
    assert not HEAVY & modules_imported_by_help(app, tmp_path)


def test_export_help_loads_torch_for_its_padded_network_but_not_lightning(tmp_path):
    imported = modules_imported_by_help("export", tmp_path)
    assert "torch" in imported and not LIGHTNING & imported


def test_a_refused_config_answers_before_lightning_loads(tmp_path):
    proc, imported = modules_imported("train", tmp_path, "data.batch_size=abc")
    assert proc.returncode == 2
    assert "data.batch_size='abc': expected an integer" in proc.stderr
    assert not HEAVY & imported
