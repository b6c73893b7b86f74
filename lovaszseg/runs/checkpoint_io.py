"""Every checkpoint Lightning writes goes to disk whole or not at all, and reads back with a clear
error when it cannot be read.

Lightning writes ``last.ckpt`` and ``best.ckpt`` through its Trainer's ``CheckpointIO``; its
default one stages the file in the system's temporary folder and moves it over, which is a copy
(not a rename) across filesystems and is never fsynced, so a kill or a full disk at the wrong
moment leaves a torn checkpoint that the next ``auto_resume=true`` dies on. This plugin (set in
``conf/trainer/default.yaml``, so every trainer config has it) writes the checkpoint to a
temporary file in the same folder, flushes and fsyncs it, renames it onto its target and fsyncs
the folder: the target is the previous checkpoint or the new one, never part of one. A write that
fails (no space left) leaves the previous file as it was and stops the run with a message naming
the file and the space left.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lovaszseg.runs.atomic import atomic_path


def unreadable_checkpoint(path: str | Path) -> str | None:
    """Why ``path`` cannot be a whole checkpoint (``torch.save`` writes a zip archive; a torn one
    has no central directory or a member whose CRC does not match), or ``None`` if it is whole.
    Nothing is unpickled, so the check runs no code from the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as err:
        return (
            f"is not a complete checkpoint archive ({err}): truncated or not written by torch.save"
        )
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if damaged is not None:
        return f"has a corrupt member {damaged} (CRC mismatch)"
    return None


def free_space(folder: Path) -> str:
    """The space left on ``folder``'s filesystem, for the error message (``"1.2 MiB free"``)."""
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        return "free space unknown"


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (the folder's entry is what the rename changed)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a fsynced temporary sibling, renamed onto the target; ``torch.load``
    after checking the archive is whole."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} takes no storage_options (got {storage_options!r}): it "
                "writes local files"
            )
        target = Path(path)
        # serialised in memory first (as Lightning's own writer does): torch.save straight into
        # a file turns a full disk into an opaque RuntimeError from its zip writer
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            with atomic_path(target) as temporary, temporary.open("wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise OSError(
                err.errno,
                f"could not write checkpoint {target} ({err.strerror or err}; "
                f"{free_space(target.parent)} on {target.parent}); the previous {target.name}, "
                "if any, is unchanged",
            ) from err
        fsync_folder(target.parent)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        problem = unreadable_checkpoint(path)
        if problem is not None:
            raise ValueError(f"checkpoint {path} {problem}")
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
