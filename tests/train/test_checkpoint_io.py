"""Checkpoints written whole or not at all, torn ones refused by name, killed writes cleaned up."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from lovaszseg.config.resolvers import register_resolvers
from lovaszseg.runs import checkpoint_io
from lovaszseg.runs.checkpoint_io import AtomicCheckpointIO, unreadable_checkpoint
from lovaszseg.runs.faults import FAULT_ENV, parse_fault
from lovaszseg.runs.resume import resolve_resume, unfinished_writes

register_resolvers()


def checkpoint(values: int) -> dict:
    return {"state_dict": {"weight": torch.arange(values, dtype=torch.float32)}, "epoch": 3}


def saved_weight(path: Path) -> torch.Tensor:
    return AtomicCheckpointIO().load_checkpoint(path)["state_dict"]["weight"]


def test_a_saved_checkpoint_reads_back_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(10), target)
    assert torch.equal(saved_weight(target), torch.arange(10, dtype=torch.float32))
    assert os.listdir(target.parent) == ["last.ckpt"]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only): a real 'No space left on device'."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_keeps_the_previous_checkpoint_and_names_the_file_and_the_space(small_disk):
    target = small_disk / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1000), target)  # 4 kB
    with pytest.raises(OSError, match="No space left") as caught:
        AtomicCheckpointIO().save_checkpoint(checkpoint(300_000), target)  # 1.2 MB
    assert caught.value.errno == errno.ENOSPC
    message = str(caught.value)
    assert str(target) in message and "MiB free" in message and "unchanged" in message
    assert torch.equal(saved_weight(target), torch.arange(1000, dtype=torch.float32))
    assert os.listdir(small_disk) == ["last.ckpt"]


def test_a_failed_write_keeps_the_previous_checkpoint_without_a_small_disk(tmp_path, monkeypatch):
    """The same contract where no tmpfs can be mounted: the disk fills half way through."""
    target = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(5), target)

    def fill_the_disk(descriptor):  # the data written so far cannot all reach the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io.os, "fsync", fill_the_disk)
    with pytest.raises(OSError, match=f"could not write checkpoint {target}"):
        AtomicCheckpointIO().save_checkpoint(checkpoint(50), target)
    monkeypatch.undo()
    assert torch.equal(saved_weight(target), torch.arange(5, dtype=torch.float32))
    assert os.listdir(tmp_path) == ["best.ckpt"]


def torn(path: Path, keep: float) -> Path:
    """Cut ``path`` to ``keep`` of its bytes, as a non-atomic writer killed part way leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_torn_last_checkpoint_stops_the_resume_with_its_name(tmp_path, keep):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1000), last)
    torn(last, keep)
    for ckpt_path, auto_resume, how in [
        ("last", False, "ckpt_path=last"),
        (None, True, "auto_resume=true"),
        (str(last), False, f"ckpt_path={last}"),
    ]:
        with pytest.raises(ValueError) as caught:
            resolve_resume(ckpt_path, auto_resume, tmp_path)
        message = str(caught.value)
        assert message.startswith(f"{how}: checkpoint {last} is not a complete checkpoint archive")
        assert "Delete it" in message
    with pytest.raises(ValueError, match=f"checkpoint {last} is not a complete"):
        AtomicCheckpointIO().load_checkpoint(last)


def test_a_checkpoint_with_a_flipped_byte_is_refused_before_unpickling(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1000), path)
    data = bytearray(path.read_bytes())
    # inside the weight's storage: arange(1000) as float32 holds the bytes of 500.0 once
    offset = data.index(torch.tensor([500.0]).numpy().tobytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    assert unreadable_checkpoint(path) == "has a corrupt member archive/data/0 (CRC mismatch)"


def test_a_whole_checkpoint_is_resumed_from(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resolve_resume(None, True, tmp_path) is None  # nothing yet: a fresh start
    AtomicCheckpointIO().save_checkpoint(checkpoint(3), last)
    assert resolve_resume(None, True, tmp_path) == str(last)
    assert resolve_resume("last", False, tmp_path) == str(last)
    assert resolve_resume(None, False, tmp_path) is None


def killed_write(target: Path) -> Path:
    """The temporary that lovaszseg.runs.atomic.atomic_path leaves when its process is killed."""
    prefix, suffix = f".{target.name}.", target.suffix
    descriptor, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(descriptor)
    return Path(name)


def test_a_resume_removes_what_killed_writes_left_and_nothing_else(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (tmp_path / ".hydra").mkdir()
    keep = [
        checkpoints / "last.ckpt",
        checkpoints / "best.ckpt",
        tmp_path / "results.json",
        tmp_path / "metrics.csv",
        tmp_path / ".hydra" / "config.yaml",
        tmp_path / ".gitignore",
        tmp_path / ".notes.abcdefgh.txt.md",  # not a temporary of ".notes": the suffix differs
    ]
    for path in keep:
        path.write_text("x")
    stray = [killed_write(path) for path in keep[:4]]
    # the SIGTERM checkpoint is staged twice: the checkpoint writer's atomic_path inside its own
    stray.append(killed_write(stray[0]))
    assert unfinished_writes(tmp_path) == sorted(stray)
    resolve_resume(None, True, tmp_path / "nothing here")  # another run's folder: untouched
    assert all(path.exists() for path in stray)
    with pytest.raises(ValueError):  # last.ckpt here is not a checkpoint: cleaned, then refused
        resolve_resume(None, True, tmp_path)
    assert not any(path.exists() for path in stray)
    assert all(path.exists() for path in keep)


@pytest.mark.parametrize(
    "trainer", ["default", "gpu", "ddp", "ddp_spawn", "slurm"], ids=lambda t: f"trainer={t}"
)
def test_every_trainer_config_writes_checkpoints_atomically(trainer):
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer={trainer}"])
    targets = [plugin._target_ for plugin in cfg.trainer.plugins]
    assert "lovaszseg.runs.checkpoint_io.AtomicCheckpointIO" in targets


def test_parse_fault_reads_a_file_name_and_a_count():
    assert parse_fault(None) is None and parse_fault("") is None
    assert parse_fault("last.ckpt:2") == ("last.ckpt", 2)
    for bad in ["last.ckpt", "last.ckpt:0", ":3", "last.ckpt:two"]:
        with pytest.raises(ValueError, match=f"{FAULT_ENV}='{bad}': expected <file name>:<n>"):
            parse_fault(bad)


def test_a_fault_kills_the_process_at_the_nth_write_of_the_named_file(tmp_path):
    script = (
        "from lovaszseg.runs.checkpoint_io import AtomicCheckpointIO\n"
        "import torch, sys\n"
        "for value in range(3):\n"
        f"    AtomicCheckpointIO().save_checkpoint({{'v': torch.tensor(value)}}, r'{tmp_path}/b.ckpt')\n"
        f"    AtomicCheckpointIO().save_checkpoint({{'v': torch.tensor(value)}}, r'{tmp_path}/a.ckpt')\n"
        "    print(value, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {FAULT_ENV: "a.ckpt:2"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == -9, done.stderr
    assert done.stdout.split() == ["0"]
    # killed inside the second write of a.ckpt: the first is whole, b.ckpt's second landed
    assert AtomicCheckpointIO().load_checkpoint(tmp_path / "a.ckpt")["v"] == 0
    assert AtomicCheckpointIO().load_checkpoint(tmp_path / "b.ckpt")["v"] == 1
    (left,) = unfinished_writes(tmp_path)
    assert left.name.startswith(".a.ckpt.") and left.suffix == ".ckpt"
