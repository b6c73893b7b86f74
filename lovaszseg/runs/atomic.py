"""Atomic replacement: readers see the old file (or folder) or the new one, never a torn one.

The project's one way to write what others read while it may change: a file (results.json, the
reports, figures, data lists, the SIGTERM checkpoint) is written to a temporary sibling and
renamed onto its target; a folder (a generated or downloaded dataset) is filled in a temporary
sibling and renamed into place. The temporary file gets the mode a plain ``open`` would give
(0666 less the umask, 0644 by default), not ``mkstemp``'s 0600, so everyone who can read the
project folder can read what the runs write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lovaszseg.runs.faults import fault_point


def _umask() -> int:
    """The process's umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield tmp_path
        fault_point(target.name)  # LOVASZSEG_FAULT: the torture test's kill inside a write
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: str | Path, payload: Mapping[str, Any]) -> None:
    """Indented JSON with a final newline; NaN is refused (JSON has none)."""
    write_text_atomic(target, json.dumps(payload, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def staging_folder(target: str | Path, purpose: str = "tmp") -> Iterator[Path]:
    """Yield a new empty folder beside ``target`` to fill; whatever is left of it goes on exit."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.{purpose}-", dir=target.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def replace_folder(folder: str | Path, target: str | Path) -> None:
    """Move ``folder`` onto ``target`` in one rename (same filesystem); a ``target`` that exists is
    renamed aside first and deleted after."""
    target = Path(target)
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        shutil.rmtree(old)
    os.replace(folder, target)
