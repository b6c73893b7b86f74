"""Helpers for the tests that submit jobs to a real SLURM (``bash scripts/local_slurm.sh start``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

# 2 tasks of 1 CPU each (the local cluster has nproc CPUs), little memory, a short time limit
SLURM_CPU_JOB = (
    "hydra/launcher=slurm",
    "trainer=slurm",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=15",
)


def slurm_problem() -> str | None:
    """Why no SLURM job can run here, or None when ``srun`` answers."""
    for command in ("sinfo", "srun", "sbatch", "scontrol"):
        if shutil.which(command) is None:
            return f"{command} not found"
    try:
        subprocess.run(["sinfo", "--noheader"], check=True, capture_output=True, timeout=15)
        subprocess.run(
            ["srun", "-N1", "-n1", "hostname"], check=True, capture_output=True, timeout=60
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return f"SLURM does not answer ({err})"
    return None


def submitted_job_ids(sweep_dir: Path) -> list[str]:
    """SLURM ids of a submitit sweep's jobs, from its ``.submitit/<job id>`` folders."""
    folders = (sweep_dir / ".submitit").glob("*")
    return sorted(f.name for f in folders if f.is_dir() and re.fullmatch(r"\d+(_\d+)?", f.name))
