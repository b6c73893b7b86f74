"""What lovaszseg.config.relaunch relies on in Lightning's private launcher, pinned: ``ddp`` re-executes
the command line unless the cluster (SLURM's srun) has started the ranks, ``ddp_spawn`` never
does. A Lightning upgrade that changes either fails here, not deep inside a sweep."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.plugins.environments import SLURMEnvironment

from lovaszseg.config.relaunch import relaunches_script


def test_ddp_relaunches_the_script_except_where_slurm_started_the_ranks(monkeypatch):
    def ddp_trainer(**kwargs):
        return pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False, **kwargs)

    assert relaunches_script(ddp_trainer())
    slurm_task = {
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_NAME": "train",
        "SLURM_NODELIST": "vm",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    for name, value in slurm_task.items():
        monkeypatch.setenv(name, value)
    plugin = SLURMEnvironment(auto_requeue=False)
    assert not relaunches_script(ddp_trainer(plugins=[plugin]))


def test_spawned_ranks_and_one_process_are_not_relaunched():
    spawn = pl.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, logger=False)
    assert not relaunches_script(spawn)
    assert not relaunches_script(pl.Trainer(accelerator="cpu", devices=1, logger=False))
