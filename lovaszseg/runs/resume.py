"""Which checkpoint a run resumes from, checked before anything is built.

``ckpt_path=last`` means this run folder's ``checkpoints/last.ckpt``, ``ckpt_path=<file>`` that
file, and ``auto_resume=true`` (a SLURM requeue) ``last.ckpt`` when it exists and a fresh start
otherwise. The chosen file is checked to be a whole checkpoint here, so a torn or foreign file
stops the run with its name and what to do, not with an unpickling traceback from deep inside
Lightning. A run killed while writing leaves the temporary sibling of the file it was writing
(never renamed into place, so never read); those are removed before the run writes again.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from lovaszseg.runs.checkpoint_io import unreadable_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT_FOLDER = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"

# lovaszseg.runs.atomic.atomic_path's temporaries: ".<target name>.<8 random characters><suffix>"
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?$")


def last_checkpoint(output_dir: Path) -> Path:
    return output_dir / CHECKPOINT_FOLDER / LAST_CHECKPOINT


def unfinished_writes(output_dir: Path) -> list[Path]:
    """The temporaries that killed writers left in the run folder and its checkpoint folder."""
    found = []
    for folder in (output_dir, output_dir / CHECKPOINT_FOLDER):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _TEMPORARY.match(path.name)
            if match and path.is_file() and Path(match["target"]).suffix == (match["suffix"] or ""):
                found.append(path)
    return sorted(found)


def discard_unfinished_writes(output_dir: Path) -> None:
    for path in unfinished_writes(output_dir):
        path.unlink(missing_ok=True)
        log.info("removed %s, left by a write that was interrupted", path)


def require_readable(path: Path, how: str) -> None:
    """Stop with the file's name and the way out when ``path`` is not a whole checkpoint."""
    problem = unreadable_checkpoint(path)
    if problem is not None:
        raise ValueError(
            f"{how}: checkpoint {path} {problem}. Delete it to start the run again from scratch, "
            "or resume from another checkpoint with ckpt_path=<file>"
        )


def resolve_resume(ckpt_path: str | None, auto_resume: bool, output_dir: Path) -> str | None:
    """The checkpoint to resume from (checked to be whole), or ``None`` for a fresh start.

    ``ckpt_path=last`` -> this run folder's last.ckpt (must exist); another ``ckpt_path`` -> that
    file; ``auto_resume`` -> last.ckpt if present. Temporaries of interrupted writes in the run
    folder are removed first: the run is about to write its files again.
    """
    last = last_checkpoint(output_dir)
    discard_unfinished_writes(output_dir)
    if ckpt_path == "last":
        if not last.is_file():
            raise ValueError(
                f"ckpt_path=last but {last} does not exist; to resume a run, point Hydra at its "
                "directory: hydra.run.dir=<run dir> ckpt_path=last"
            )
        require_readable(last, "ckpt_path=last")
        return str(last)
    if ckpt_path is not None:
        if not Path(ckpt_path).is_file():
            raise ValueError(f"ckpt_path={ckpt_path}: no such checkpoint file")
        require_readable(Path(ckpt_path), f"ckpt_path={ckpt_path}")
        return str(ckpt_path)
    if auto_resume and last.is_file():
        require_readable(last, "auto_resume=true")
        return str(last)
    return None
