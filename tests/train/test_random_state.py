"""The random generators go through a checkpoint file and come back drawing the same numbers."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from lovaszseg.callbacks.random_state import RandomStateCheckpoint


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_states_survive_a_weights_only_checkpoint_and_are_restored_when_training_starts():
    seed_all(1)
    draws()  # move every generator off its seed
    buffer = io.BytesIO()
    torch.save(RandomStateCheckpoint().state_dict(), buffer)
    expected = draws()

    seed_all(9)
    callback = RandomStateCheckpoint()
    callback.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert draws() != expected  # nothing is restored before training starts
    callback.on_train_start(None, None)
    assert draws() == expected
    seed_all(9)
    callback.on_train_start(None, None)  # once only: a second start leaves them alone
    assert draws() != expected
