"""LightningModule for interference regression: the net is passed in (any module with the
``InterferenceNet`` forward signature returning [B, 3] = P, low, high, so the LSTM baseline
trains through the same loop).

Loss: log-cosh on P (quadratic near zero, linear for large errors, so a few windows with
extreme contention do not dominate) plus pinball losses for the interval bounds. The
errors are scaled before log-cosh because P errors of a few hundredths would otherwise sit
deep in the quadratic regime and the loss would behave like plain MSE.
Schedule: linear warm-up, then cosine decay to zero over the run.
"""

from __future__ import annotations

import copy
import math

import lightning as L
import numpy as np
import torch
from torch import nn

from models.interference.datamodule import InterferenceDataModule


def log_cosh(error: torch.Tensor, scale: float) -> torch.Tensor:
    x = scale * error
    # log(cosh(x)) = |x| + log1p(exp(-2|x|)) - log 2, stable for large |x|
    return (x.abs() + torch.log1p(torch.exp(-2 * x.abs())) - math.log(2.0)) / scale**2


def pinball(pred: torch.Tensor, target: torch.Tensor, q: float) -> torch.Tensor:
    diff = target - pred
    return torch.maximum(q * diff, (q - 1) * diff)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * (1 + math.cos(math.pi * progress))


class InterferenceModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        quantiles: tuple[float, float] = (0.05, 0.95),
        loss_scale: float = 20.0,
        interval_weight: float = 0.5,
    ):
        super().__init__()
        self.net = net
        self.save_hyperparameters(ignore=["net"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["steps"], batch["pad"], batch["tokens"], batch["context"])

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.hparams
        point = log_cosh(out[:, 0] - y, hp.loss_scale).mean()
        lo, hi = hp.quantiles
        interval = (pinball(out[:, 1], y, lo) + pinball(out[:, 2], y, hi)).mean()
        return point + hp.interval_weight * interval, point

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self(batch)
        loss, _ = self._loss(out, batch["p"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(out))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self(batch)
        loss, _ = self._loss(out, batch["p"])
        n = len(out)
        self.log("val_loss", loss, prog_bar=True, batch_size=n)
        self.log("val_mae_pp", 100 * (out[:, 0] - batch["p"]).abs().mean(), batch_size=n)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch)

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, param in self.net.named_parameters():
            # Norms, biases, embeddings and CLS tokens are not weights to shrink.
            (no_decay if param.ndim < 2 or "embedding" in name else decay).append(param)
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=hp.lr,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = max(int(hp.warmup_fraction * total), 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def predict_array(net: nn.Module, enc, batch_size: int = 1024) -> np.ndarray:
    """Forward ``Encoded`` windows in batches → float [N, 3] (P, low, high)."""
    was_training = net.training
    net.eval()
    outs = []
    for i in range(0, len(enc), batch_size):
        sl = slice(i, i + batch_size)
        outs.append(
            net(
                torch.from_numpy(enc.steps[sl]),
                torch.from_numpy(enc.pad[sl]),
                torch.from_numpy(enc.tokens[sl]),
                torch.from_numpy(enc.context[sl]),
            ).numpy()
        )
    net.train(was_training)
    return np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, 3))


class _BestWeights(L.Callback):
    """Keeps the weights of the epoch with the lowest validation MAE (held-out workloads)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict | None = None
        self.epoch = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val_mae_pp")
        if value is not None and float(value) < self.best:
            self.best = float(value)
            self.state = copy.deepcopy(pl_module.net.state_dict())
            self.epoch = trainer.current_epoch


def fit_best_epoch(
    net: nn.Module,
    enc_fit,
    enc_val,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    patience: int = 0,
    fast_dev_run: bool = False,
    callbacks: tuple[L.Callback, ...] = (),
    **module_options,
) -> dict:
    """Train ``net`` on encoded windows and leave it with the weights of its best epoch on
    ``enc_val`` (workloads held out of fitting); ``patience`` > 0 stops early.

    Returns {"best_epoch", "epochs_run"} (best_epoch -1 when no validation ran)."""
    best = _BestWeights()
    extra: list[L.Callback] = [best, *callbacks]
    if patience > 0:
        extra.append(L.pytorch.callbacks.EarlyStopping("val_mae_pp", patience=patience, mode="min"))
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        fast_dev_run=fast_dev_run,
        callbacks=extra,
    )
    trainer.fit(
        InterferenceModule(net, **module_options),
        InterferenceDataModule(enc_fit, enc_val, batch_size, seed),
    )
    if best.state is not None:
        net.load_state_dict(best.state)
    net.eval()
    return {"best_epoch": best.epoch, "epochs_run": trainer.current_epoch}


def ensemble_mean(member_predictions: list[np.ndarray]) -> np.ndarray:
    """The ensemble's [N, 3] (P, low, high): the members' mean, column by column.

    Each member has low <= P <= high, so the mean keeps that order."""
    return np.mean(np.stack(member_predictions), axis=0)
