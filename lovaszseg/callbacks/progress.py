"""Lightning's rich progress bar, counting epochs as the log lines and people do (1/4 … 4/4)."""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """``Epoch 1/4`` for the first of four epochs, where Lightning's bar says ``Epoch 0/3``."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        description = f"Epoch {current_epoch + 1}"
        if max_epochs is not None and max_epochs > 0:  # -1: no limit
            description += f"/{max_epochs}"
        # as wide as the validation bar's description, as Lightning pads it (no flicker)
        return f"{description:{len(self.validation_description)}}"
