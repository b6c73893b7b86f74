"""Lightning's INFO lines are kept off the console; its warnings, and the project's lines, stay."""

from __future__ import annotations

import io
import logging

import pytest

from lovaszseg.config.console import LIGHTNING_LOGGERS, _DropNoise, quiet_lightning_console


def shown(name: str, level: int, message: str = "a message") -> bool:
    record = logging.LogRecord(name, level, __file__, 0, message, None, None)
    return _DropNoise().filter(record)


@pytest.mark.parametrize(
    "name",
    [
        "pytorch_lightning.utilities.rank_zero",  # GPU available, `Trainer.fit` stopped
        "lightning_fabric.utilities.seed",  # Seed set to 1
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric",
    ],
)
def test_lightning_info_is_off_the_console_and_its_warnings_on_it(name):
    assert (shown(name, logging.INFO), shown(name, logging.WARNING)) == (False, True)


@pytest.mark.parametrize(
    "name", ["lovaszseg.callbacks.epoch_log", "__main__", "pytorch_lightning_extra", "lightning"]
)
def test_other_loggers_info_stays_on_the_console(name):
    assert shown(name, logging.INFO)


def test_the_entry_points_console_drops_lightning_info_and_the_log_file_keeps_it(
    monkeypatch, tmp_path
):
    console_text = io.StringIO()
    console = logging.StreamHandler(console_text)
    log_file = logging.FileHandler(tmp_path / "train.log")
    monkeypatch.setattr(logging.getLogger(), "handlers", [console, log_file])  # Hydra's two
    for name in LIGHTNING_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    try:
        quiet_lightning_console()
        for name, message in (
            ("lightning_fabric.utilities.seed", "Seed set to 1"),
            ("pytorch_lightning.utilities.rank_zero", "GPU available: False"),
            ("lovaszseg.callbacks.epoch_log", "epoch 1/2"),
        ):
            logging.getLogger().handle(
                logging.LogRecord(name, logging.INFO, __file__, 0, message, None, None)
            )
    finally:
        logging.captureWarnings(False)
        log_file.close()
    assert console_text.getvalue().splitlines() == ["epoch 1/2"]
    assert (tmp_path / "train.log").read_text().splitlines() == [
        "Seed set to 1",
        "GPU available: False",
        "epoch 1/2",
    ]
