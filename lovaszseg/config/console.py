"""What the entry points print when something goes wrong, and what they keep off the console.

A mistake a person can fix (a wrong type in the config, a binary loss on multi-class data, a
batch that does not divide, missing data, a checkpoint that cannot be read) is refused by the
project's own code with a ``ValueError`` (or ``OSError``, a full disk) that says what was wrong
and what to do: that message is printed once, on stderr, without a traceback, and the command
exits with status 2. Anything else is a bug: its traceback is printed once and the command exits
with status 1. Both go to the job's log file (``train.log``) too.

In a submitit job (``hydra/launcher=slurm``) a failed run ends in an exception instead of an exit
status: submitit keeps the exception for the launcher, which then reports the job's failure at
once. A run that only exits leaves the launcher asking ``sacct`` about the job, and waiting for
ever on a cluster that keeps no accounting.

Lightning's INFO lines (tips, "GPU available", "Seed set to 1", "`Trainer.fit` stopped") and
its deprecation warnings say nothing a user of this project acts on; they are kept out of the
console and still written to the log file. Lightning's own warnings and errors stay on it.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from lovaszseg.runs import contract

log = logging.getLogger(__name__)
Result = TypeVar("Result")

REFUSALS = (ValueError, OSError)
"""Exception types that, raised by the project's own code, are a refusal and not a bug."""

PROJECT_FOLDER = Path(__file__).resolve().parent.parent
LIGHTNING_LOGGERS = (
    "pytorch_lightning",
    "lightning.pytorch",
    "lightning_fabric",
    "lightning.fabric",
)
"""Lightning's loggers, whose records below WARNING are kept off the console."""
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
"""Where torchrun, Lightning's ddp, SLURM and LSF tell a process its rank; Lightning reads the
first one set, in this order."""
SUBMITIT_JOB = "SUBMITIT_FOLDER"
"""Set by submitit in the processes of a job it runs."""


class RunEnded(Exception):
    """A run that stopped for a reason it has logged, neither a refusal nor a bug (submitit
    would not requeue it again)."""


def refusal(error: BaseException) -> BaseException | None:
    """The REFUSALS error raised by the project's own code (its innermost frame is in lovaszseg)
    that ``error`` is or wraps (Hydra's instantiate wraps what a ``_target_`` raises), or None.
    A config value left ``???`` (``ckpt_path`` not given) is the user's to give: a refusal too."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        return refusal(error.__cause__)
    if isinstance(error, MissingMandatoryValue):
        return ValueError(f"{error.full_key} is required: add {error.full_key}=... to the command")
    if not isinstance(error, REFUSALS) or error.__traceback__ is None:
        return None
    innermost = traceback.extract_tb(error.__traceback__)[-1]
    return error if Path(innermost.filename).resolve().is_relative_to(PROJECT_FOLDER) else None


def log_to_files(level: int, message: str) -> None:
    """``message`` to the log files of the root logger (train.log), not to the console."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def is_rank_zero() -> bool:
    """Whether this is the job's first process. Lightning's rank once Lightning is loaded (its
    strategies set it); before that (a refusal at the config check) the launcher's, read as
    Lightning reads it. Lightning is not imported for this: ``--help`` and a config refusal must
    not wait seconds for torch."""
    if "pytorch_lightning" in sys.modules:
        from pytorch_lightning.utilities.rank_zero import rank_zero_only

        return rank_zero_only.rank == 0
    launched = next((os.environ[name] for name in RANK_VARIABLES if name in os.environ), "0")
    return int(launched) == 0


def mark_failed(results_file: Path, error: BaseException) -> None:
    """A run refused before training wrote no results: say it failed, so reports count it so."""
    if is_rank_zero() and not results_file.exists():
        contract.write_results(
            results_file,
            {contract.STATUS: contract.FAILED, "error": f"{type(error).__name__}: {error}"},
        )


def run_for_people(
    entry: Callable[..., Result], *args: Any, results_file: Path | None = None
) -> Result:
    """``entry(*args)``; a refusal becomes one line on stderr and exit status 2, a bug its
    traceback (once) and exit status 1; in a submitit job, a ``RunEnded`` that submitit keeps."""
    in_submitit_job = SUBMITIT_JOB in os.environ
    try:
        return entry(*args)
    except Exception as error:
        if results_file is not None:
            mark_failed(Path(results_file), error)
        refused = refusal(error)
        if refused is not None:
            log_to_files(logging.ERROR, f"refused: {refused}")
            print(f"error: {refused}", file=sys.stderr)
            status, reason = 2, f"refused: {refused}"
        elif isinstance(error, RunEnded):
            status, reason = 1, str(error)
        else:
            bug = "failed with an unexpected error (a bug: please report it)"
            log.exception(bug)
            status, reason = 1, f"{bug}:\n{traceback.format_exc()}"
        if in_submitit_job:
            # text only: the error itself may not survive submitit's pickling
            raise RunEnded(reason) from None
        raise SystemExit(status) from None


def from_lightning(logger_name: str) -> bool:
    return any(
        logger_name == name or logger_name.startswith(f"{name}.") for name in LIGHTNING_LOGGERS
    )


class _DropNoise(logging.Filter):
    """Python's warnings (Lightning's deprecations among them) and Lightning's INFO lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings":
            return False
        return record.levelno >= logging.WARNING or not from_lightning(record.name)


def quiet_lightning_console() -> None:
    """Keep Lightning's INFO lines and Python's warnings off the console handlers (the log file
    still gets them)."""
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.addFilter(_DropNoise())
    # Lightning imported before logging was set up prints through a handler of its own
    for name in LIGHTNING_LOGGERS:
        lightning = logging.getLogger(name)
        for handler in lightning.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.addFilter(_DropNoise())
