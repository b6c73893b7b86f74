"""Kill this process inside a write, on request: how the torture test reaches the worst moments.

A run must survive a SIGKILL at any instant, and the instants that matter most (a checkpoint,
``results.json`` or ``metrics.csv`` half way to disk) are too short to hit by a timer. Setting
``LOVASZSEG_FAULT=<file name>:<n>`` (``last.ckpt:2``, ``best.ckpt:1``, ``results.json:3``,
``metrics.csv:5``) makes the process SIGKILL itself the ``n``-th time it reaches the fault point
of a write to a file of that name: after the new content is on its way, before the write is
complete. Unset, a fault point is one comparison with ``None``.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "LOVASZSEG_FAULT"


def parse_fault(spec: str | None) -> tuple[str, int] | None:
    """``"<file name>:<n>"`` as ``(file name, n)``; ``None`` or ``""`` means no fault."""
    if not spec:
        return None
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"{FAULT_ENV}={spec!r}: expected <file name>:<n>, the n-th write (n >= 1) of that "
            "file is killed, e.g. last.ckpt:2 or results.json:1"
        )
    return name, int(count)


_armed = parse_fault(os.environ.get(FAULT_ENV))
_reached = 0


def fault_point(file_name: str) -> None:
    """SIGKILL this process if ``LOVASZSEG_FAULT`` names ``file_name`` and this is its n-th write."""
    global _reached
    if _armed is None or _armed[0] != file_name:
        return
    _reached += 1
    if _reached == _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
