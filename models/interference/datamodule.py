"""DataModule over encoded windows held in memory as tensors.

Batches are sliced from whole tensors (``__getitems__``) rather than collated sample by
sample: with ~100-feature steps and thousands of windows per epoch, per-sample collation
would cost more than the forward pass on two cores.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from models.interference.encoding import Encoded


class EncodedDataset(Dataset):
    def __init__(self, enc: Encoded):
        self.tensors = {
            "steps": torch.from_numpy(np.ascontiguousarray(enc.steps, dtype=np.float32)),
            "pad": torch.from_numpy(np.ascontiguousarray(enc.pad, dtype=bool)),
            "tokens": torch.from_numpy(np.ascontiguousarray(enc.tokens, dtype=np.float32)),
            "context": torch.from_numpy(np.ascontiguousarray(enc.context, dtype=np.float32)),
            "p": torch.from_numpy(np.nan_to_num(enc.p).astype(np.float32)),
        }

    def __len__(self) -> int:
        return len(self.tensors["p"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        ix = torch.as_tensor(idx)
        return {k: v[ix] for k, v in self.tensors.items()}


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def loader(enc: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        EncodedDataset(enc),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=_identity,
        generator=gen if shuffle else None,
    )


class InterferenceDataModule(L.LightningDataModule):
    """Train and validation windows, already encoded with the training scaler."""

    def __init__(self, train: Encoded, val: Encoded, batch_size: int = 256, seed: int = 0):
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return loader(self.train, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        return loader(self.val, 4 * self.batch_size)
