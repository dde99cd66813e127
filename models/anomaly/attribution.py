"""Which metrics and which log templates made a window score high.

- Supervised score (anomaly logit): metric shares are gradient x (input - reference), the
  reference being each input's median over the window's history, summed over time steps
  and channels of each metric, averaged with each metric's change in the last patch
  (``blend_with_change``); template shares sum |grad · w| over the patches where the
  template occurred (w = log1p(count), the weight the template enters with).
- Forecast score: metric shares are each metric's share of the normalised forecast error
  (what the model could not predict), averaged with each metric's change in the last patch
  the same way; template shares are gradient x input of that error
  with respect to the template weights (which lines changed the forecast).

Shares are non-negative fractions of the window's total attribution; lists are ranked and
cut to ``top`` entries, so a list sums to at most 1.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from models.anomaly.datamodule import Batch
from models.anomaly.logmining import TemplateTable
from models.anomaly.module import DEFAULT_TOPK, raw_scores, scaled_forecast_errors


def history_reference(x: torch.Tensor) -> torch.Tensor:
    """The reference input of gradient x (input - reference): each summary's median over
    the window's history patches (all but the last). Against zero, a metric that sits at
    its usual, large level took a large share although nothing happened to it; against its
    own history only what changed counts (sim validation fleet: the top metric is one the
    case changed for 0.82 of detected cases, 0.75 against zero; docs/anomaly.md)."""
    if x.shape[1] < 2:
        return torch.zeros_like(x)
    return x[:, :-1].median(dim=1, keepdim=True).values.expand_as(x)


GLOBAL_MEAN = 0  # summary channel: the patch mean in the spec's robust units
CHANGE_WEIGHT = 0.5


def last_patch_change(x: np.ndarray) -> np.ndarray:
    """[B, M]: how far each metric's last patch mean left its history patches, in robust
    z (median and MAD of the history's patch means, the MAD floored at 0.1 robust units)."""
    level = x[:, :, :, GLOBAL_MEAN]
    hist = level[:, :-1]
    med = np.median(hist, axis=1)
    mad = 1.4826 * np.median(np.abs(hist - med[:, None]), axis=1)
    return np.abs(level[:, -1] - med) / np.maximum(mad, 0.1)


def blend_with_change(model: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[B, M] metric shares: the mean of the model's shares and of each metric's change in
    the last patch (``last_patch_change``). The gradient names what the model used to
    recognise the case, not always the metric that moved most: on the sim validation fleet
    the top metric is one the case changed for 0.92 of detected cases blended, 0.81-0.82
    for the gradient alone (docs/anomaly.md)."""
    if x.shape[1] < 2:
        return _shares(model)
    return (1 - CHANGE_WEIGHT) * _shares(model) + CHANGE_WEIGHT * _shares(last_patch_change(x))


def _shares(v: np.ndarray) -> np.ndarray:
    total = v.sum(axis=1, keepdims=True)
    return np.divide(v, total, out=np.zeros_like(v, dtype=float), where=total > 0)


def ranked_shares(names: list[str], values: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
    """Names ranked by value, each with its share of the total (positive values only)."""
    total = float(values.sum())
    if total <= 0 or not np.isfinite(total):
        return []
    order = np.argsort(-values, kind="stable")[:top]
    return [(names[i], float(values[i] / total)) for i in order if values[i] > 0]


def attribute(
    net: nn.Module,
    batch: Batch,
    mode: str,
    metric_names: list[str],
    table: TemplateTable | None,
    err_scale: torch.Tensor | None = None,
    topk: int = DEFAULT_TOPK,
    top: int = 5,
) -> list[tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
    """Per window: (metrics [(name, share)], templates [(template text, share)])."""
    B = batch.size
    x = None if batch.x is None else batch.x.detach().clone().requires_grad_(True)
    w = None
    if batch.logs is not None:
        w = batch.logs.weight.detach().clone().requires_grad_(True)
    was_training = net.training
    net.eval()
    with torch.enable_grad():
        out = net(batch.group, x, batch.time, batch.logs, log_weight=w)
        probe = replace(batch, x=x)
        score = raw_scores(out, probe, mode, net.patch_steps, err_scale, topk)
        inputs = [t for t in (x, w) if t is not None]
        grads = torch.autograd.grad(score.sum(), inputs, allow_unused=True)
    net.train(was_training)
    grads = dict(zip([id(t) for t in inputs], grads, strict=True))

    metric_part = np.zeros((B, len(metric_names)))
    if x is not None:
        if mode == "supervised":
            g = grads[id(x)]
            if g is not None:
                model = (g * (x - history_reference(x))).abs().sum(dim=(1, 3)).detach().numpy()
                metric_part = blend_with_change(model, x.detach().numpy())
        else:
            err = scaled_forecast_errors(out, probe, net.patch_steps, err_scale).detach()
            metric_part = blend_with_change(err.numpy(), x.detach().numpy())

    template_part: list[dict[int, float]] = [{} for _ in range(B)]
    if w is not None and grads.get(id(w)) is not None and len(w):
        contrib = (grads[id(w)] * w).abs().detach().numpy()
        window = (batch.logs.bag // net.n_patches).numpy()
        tmpl = batch.logs.templates[batch.logs.template.numpy()]
        for b, t, c in zip(window, tmpl, contrib, strict=True):
            template_part[b][int(t)] = template_part[b].get(int(t), 0.0) + float(c)

    out_list = []
    for b in range(B):
        metrics = ranked_shares(metric_names, metric_part[b], top)
        templates: list[tuple[str, float]] = []
        if template_part[b] and table is not None:
            ids = list(template_part[b])
            texts = [table.texts[i] for i in ids]
            templates = ranked_shares(texts, np.array([template_part[b][i] for i in ids]), top)
        out_list.append((metrics, templates))
    return out_list
