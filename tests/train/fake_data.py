"""A tiny, learnable in-memory DataModule for tests that must not depend on the real datasets."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset


class StripesDataset(Dataset):
    """Images whose class is written in the brightness of vertical stripes; a 255 border."""

    def __init__(self, count: int, size: int, num_classes: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        stripe = size // num_classes
        self.masks = torch.zeros(count, size, size, dtype=torch.long)
        for i in range(count):
            order = torch.randperm(num_classes, generator=generator)
            for slot, cls in enumerate(order.tolist()):
                self.masks[i, :, slot * stripe : (slot + 1) * stripe] = cls
        brightness = self.masks.float() / max(num_classes - 1, 1)
        noise = 0.05 * torch.randn(count, 3, size, size, generator=generator)
        self.images = brightness.unsqueeze(1).expand(-1, 3, -1, -1) * 2 - 1 + noise
        self.masks[:, :1, :] = 255

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "mask": self.masks[index], "name": f"img{index:03d}"}


class StripesDataModule(pl.LightningDataModule):
    def __init__(
        self,
        num_classes: int = 2,
        class_names: list[str] | None = None,
        ignore_index: int = 255,
        batch_size: int = 4,
        crop_size: int = 32,
        num_workers: int = 0,
        train_count: int = 8,
        val_count: int = 4,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_names = class_names or [f"class{i}" for i in range(num_classes)]
        self.ignore_index = ignore_index
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.train_count = train_count
        self.val_count = val_count

    def train_dataloader(self) -> DataLoader:
        data = StripesDataset(self.train_count, self.crop_size, self.num_classes, seed=0)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        data = StripesDataset(self.val_count, self.crop_size, self.num_classes, seed=1)
        return DataLoader(data, batch_size=self.batch_size)
