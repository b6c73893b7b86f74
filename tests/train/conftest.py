"""Running the real entry points as subprocesses on tiny synthetic data shared by the session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.train.entry import FAST
from tests.train.slurm import slurm_problem


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


Runner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_entry(data_dir: Path, tmp_path: Path) -> Runner:
    """``run_entry("lovaszseg.train", *overrides)`` in ``tmp_path``; outputs land under it."""

    def run(
        module: str,
        *overrides: str,
        multirun: bool = False,
        check: bool = True,
        timeout: float = 240,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        flags = ["--multirun"] if multirun else []
        command = [
            sys.executable,
            "-m",
            module,
            *flags,
            *FAST,
            f"paths.data_dir={data_dir}",
            *overrides,
        ]
        environment = os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
        result = subprocess.run(
            command,
            cwd=tmp_path,
            env=environment | (env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def slurm() -> None:
    """Skip (fail in CI, where LOVASZSEG_REQUIRE_SLURM=1) when no SLURM job can run."""
    problem = slurm_problem()
    if problem is None:
        return
    message = f"no SLURM here: {problem}; start one with `bash scripts/local_slurm.sh start` (root)"
    if os.environ.get("LOVASZSEG_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)
