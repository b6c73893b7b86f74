"""What the entry points print for a refusal, for a bug, and what they keep off the console."""

from __future__ import annotations

import json
import logging

import pytest
from hydra.utils import instantiate

from lovaszseg.config.console import SUBMITIT_JOB, RunEnded, _DropNoise, refusal, run_for_people
from lovaszseg.config.types import check_config_types
from tests.train.test_config import compose_train


def refuse_wrong_types():
    check_config_types(compose_train("data.batch_size=abc"))


def test_a_refusal_is_one_line_on_stderr_with_exit_status_2_and_a_failed_run(tmp_path, capsys):
    results = tmp_path / "results.json"
    with pytest.raises(SystemExit) as stop:
        run_for_people(refuse_wrong_types, results_file=results)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert (
        captured.err
        == "error: wrong type in the config: data.batch_size='abc': expected an integer\n"
    )
    assert "Traceback" not in captured.out + captured.err
    saved = json.loads(results.read_text())
    assert saved["status"] == "failed" and "expected an integer" in saved["error"]


def test_a_refusal_wrapped_by_hydra_instantiate_is_still_a_refusal():
    cfg = compose_train("data=synthetic_voc", "loss=lovasz_hinge")
    with pytest.raises(Exception) as wrapped:
        instantiate(cfg.module)
    assert type(wrapped.value).__name__ == "InstantiationException"
    assert "the loss is binary" in str(refusal(wrapped.value))


def test_a_bug_prints_its_traceback_and_exits_with_status_1(tmp_path, caplog):
    def bug():
        return {}["missing"]

    with pytest.raises(SystemExit) as stop:
        run_for_people(bug, results_file=tmp_path / "results.json")
    assert stop.value.code == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "a bug" in record.getMessage() and record.exc_info[0] is KeyError


def test_in_a_submitit_job_a_failed_run_ends_in_an_exception_submitit_keeps(
    tmp_path, capsys, caplog, monkeypatch
):
    # submitit writes the job's result only for an exception; after an exit status the launcher
    # waits on sacct, for ever where a cluster keeps no accounting
    monkeypatch.setenv(SUBMITIT_JOB, str(tmp_path))
    with pytest.raises(RunEnded, match="refused: wrong type in the config: data"):
        run_for_people(refuse_wrong_types, results_file=tmp_path / "refused.json")
    assert capsys.readouterr().err.startswith("error: wrong type in the config")

    def bug():
        return {}["missing"]

    with pytest.raises(RunEnded, match=r"(?s)a bug: please report it.*KeyError: 'missing'"):
        run_for_people(bug)

    def ended():
        raise RunEnded("submitit did not requeue the job: timed-out too many times")

    caplog.clear()
    with pytest.raises(RunEnded, match="timed-out too many times"):
        run_for_people(ended)
    assert not [r for r in caplog.records if "a bug" in r.getMessage()]


def test_a_run_ended_for_a_logged_reason_exits_1_and_is_not_called_a_bug(caplog, monkeypatch):
    monkeypatch.delenv(SUBMITIT_JOB, raising=False)

    def ended():
        raise RunEnded("submitit did not requeue the job")

    with pytest.raises(SystemExit) as stop:
        run_for_people(ended)
    assert stop.value.code == 1
    assert not [r for r in caplog.records if "a bug" in r.getMessage()]


def test_value_errors_of_libraries_are_bugs_not_refusals():
    with pytest.raises(ValueError) as error:
        int("abc")  # raised inside Python, not by the project
    assert refusal(error.value) is None


def test_lightning_tips_and_warnings_are_kept_off_the_console():
    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.INFO, __file__, 0, message, None, None)

    noise = _DropNoise()
    assert not noise.filter(record("pytorch_lightning.utilities.rank_zero", "💡 Tip: try X"))
    assert not noise.filter(record("py.warnings", "LeafSpec is deprecated"))
    assert noise.filter(record("lovaszseg.callbacks.epoch_log", "epoch 1/4 step 12"))
