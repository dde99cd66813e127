"""A tiny simulated fleet and a small model trained on it, built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.simulator import VM_METRIC_NAMES
from models.interference.data import simulated_windows
from models.interference.features import Windows
from models.interference.train import TrainConfig, split_by_group, train

FLEET = {"n_nodes": 8, "n_instances": 80, "hours": 4.0}


@pytest.fixture(scope="session")
def sim_windows() -> Windows:
    w = simulated_windows([5], **FLEET, window=20, stride=20)
    return w.take(~np.isnan(w.p))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, sim_windows: Windows) -> Path:
    """A briefly trained model: enough to learn the direction of contention, not to be good."""
    fit, val, _ = split_by_group(sim_windows, 2, seed=0)
    out = tmp_path_factory.mktemp("artefact")
    # One thread: on shared, oversubscribed cores two intra-op threads spin on each other
    # (measured at load 12: 817 s for this fixture with two threads, 86 s with one).
    cfg = TrainConfig(
        out_dir=str(out), epochs=4, patience=0, max_train_windows=4000, batch_size=128, threads=1
    )
    train(cfg, data=(fit, val, list(VM_METRIC_NAMES)))
    return out
