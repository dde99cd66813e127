"""Training progress as log lines, one per epoch, for every model package.

The app's training task attaches a handler to the training module's logger and shows the
latest line on the Models page (webapp/detection/training.py), so a trainer only has to
pass its own logger here.
"""

from __future__ import annotations

import logging
import time

import lightning as L


class EpochLog(L.Callback):
    """Logs "<label> epoch k/N done at Ts: {metric: value}" after each training epoch."""

    def __init__(self, log: logging.Logger, label: str = ""):
        self.out = log
        self.label = f"{label} " if label else ""
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        values = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
        self.out.info(
            "%sepoch %d/%d done at %.0fs: %s",
            self.label,
            trainer.current_epoch + 1,
            trainer.max_epochs,
            time.perf_counter() - self.started,
            values,
        )
