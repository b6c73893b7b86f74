"""The progress bar counts epochs from 1, as the epoch log lines do."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pytorch_lightning.callbacks import RichProgressBar

from lovaszseg.callbacks.progress import ProgressBar

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    ("epoch", "max_epochs", "shown"),
    [(0, 4, "Epoch 1/4"), (3, 4, "Epoch 4/4"), (9, 10, "Epoch 10/10"), (2, -1, "Epoch 3")],
)
def test_epochs_are_counted_from_one_of_max_epochs(epoch, max_epochs, shown):
    bar = ProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    description = bar._get_train_description(epoch)
    assert description.rstrip() == shown
    assert len(description) >= len(bar.validation_description)


def test_it_overrides_the_method_lightning_calls():
    """A Lightning that renamed the hook would silently show its own 0-based count again."""
    assert "_get_train_description" in vars(RichProgressBar)
    bar = RichProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=4)
    assert bar._get_train_description(0).rstrip() == "Epoch 0/3"


def test_the_default_callbacks_use_it():
    config = yaml.safe_load((CONF / "callbacks" / "default.yaml").read_text())
    assert config["progress_bar"]["_target_"] == "lovaszseg.callbacks.progress.ProgressBar"
