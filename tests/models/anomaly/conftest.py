"""Small synthetic inputs shared by the model tests."""

import numpy as np
import pytest
import torch

from models.anomaly.datamodule import WindowShape, assemble
from models.anomaly.features import fit_spec
from models.anomaly.logmining import TemplateTable

SHAPE = WindowShape(window_steps=12, patch_steps=4, step_seconds=15)


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def table():
    t = TemplateTable(512)
    for text in ("backup <*> started", "disk <*> failed with error <NUM>", "GET /api <NUM>"):
        t.add(text)
    return t


@pytest.fixture
def spec():
    rng = np.random.default_rng(0)
    return fit_spec(rng.normal(1.0, 0.2, (200, 3, 3)).astype(np.float32), ["a", "b", "c"])


def make_batch(spec, table, B=4, seed=0, logs=True):
    rng = np.random.default_rng(seed)
    values = rng.normal(1.0, 0.2, (B, SHAPE.window_steps, 3)).astype(np.float32)
    entries = None
    if logs:
        win = np.repeat(np.arange(B), 3)
        step = np.tile([1, 6, 11], B)
        tmpl = np.tile([0, 1, 2], B)
        entries = (win, step, tmpl, np.ones(len(win), np.float32))
    ts_end = 1_736_121_600 + 3600 * np.arange(B)
    return assemble("vm", values, ts_end, entries, spec, table if logs else None, SHAPE)
