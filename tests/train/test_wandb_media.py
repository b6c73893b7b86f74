"""When the W&B media callback logs overlays: every n epochs, whatever the validation interval."""

from __future__ import annotations

import pytest

from lovaszseg.callbacks.wandb_media import media_due


def due_epochs(every_n: int, check_val_every: int | None, max_epochs: int) -> list[int]:
    """The epochs (from 0) whose validation logs media; validations as Lightning runs them."""
    step = check_val_every or 1
    validated = [e for e in range(max_epochs) if (e + 1) % step == 0]
    return [e for e in validated if media_due(e, every_n, check_val_every, max_epochs)]


@pytest.mark.parametrize(
    ("every_n", "check_val_every", "max_epochs", "expected"),
    [
        (5, 1, 12, [4, 9, 11]),  # every 5th epoch, and the last
        (5, None, 12, [4, 9, 11]),  # validated by steps: as every epoch
        # validated every 3rd epoch (2, 5, 8, ...): the first validation past 5, 10, 15, 20
        (5, 3, 24, [5, 11, 14, 20, 23]),
        (2, 3, 9, [2, 5, 8]),  # media more often than validations: every validation
        (1, 1, 3, [0, 1, 2]),
    ],
)
def test_media_follow_the_epochs_not_the_common_multiples(
    every_n, check_val_every, max_epochs, expected
):
    assert due_epochs(every_n, check_val_every, max_epochs) == expected


def test_an_endless_run_logs_only_on_schedule():
    # max_epochs -1 is Lightning's "no limit": no epoch is the last one
    assert [e for e in range(12) if media_due(e, 5, 1, -1)] == [4, 9]
