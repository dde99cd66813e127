"""Label-free development sets for the real metric datasets (``evaluate anomaly --dev``).

Every real dataset here has been scored on its test part several times, so its labels can no
longer guide a choice between methods or settings. A development set is cut from the part
*before* the test part instead: the last ``test_share`` of it becomes a held-out part into
which synthetic anomalies are injected (their positions are the labels), the ``val_share``
before that calibrates, and the rest fits. The original test part is discarded unread by
the evaluation (loaders still load it).

The injected kinds are the ones an SRE meets on server metrics, on one to four metrics that
vary in the fitting part, with a magnitude in units of that metric's spread in the fitting
part (``robust_scale``) drawn log-uniformly between ``MAGNITUDE`` bounds (so some are easy
and some are not):

- ``spike``: a short burst (1-5 steps) up or down;
- ``level_shift``: a step change that lasts the segment;
- ``drift``: a ramp that grows over the segment (a leak, a filling disk);
- ``variance``: the metric turns noisy (flapping, retries);
- ``stuck``: the metric freezes at its value when the segment starts (a hung exporter, a
  wedged process);
- ``decouple``: each chosen metric takes the values of another time of the fitting part
  (another time per metric): plausible alone, wrong together and for the moment (a
  contextual anomaly).
- ``surge`` (only when asked for, so that the default mixture stays what was measured
  first): the metric leaves the fitting part's range, to its maximum (or minimum) plus
  (minus) the size, for the segment: the shape a per-metric threshold catches best, as on a
  metric that idles and bursts and bursts higher than ever.

What this cannot tell: whether real incidents look like these. A method that wins here has
only shown that it finds these shapes on this data's normal behaviour.
"""

from __future__ import annotations

import zlib

import numpy as np

from models.anomaly.datasets import Split, label_segments_of, series_group, with_history

KINDS = ("spike", "level_shift", "drift", "variance", "stuck", "decouple")
EXTRA_KINDS = ("surge",)
MAGNITUDE = (1.5, 8.0)  # in spreads (robust_scale), log-uniform
SEGMENT_STEPS = (5, 60)
STEPS_PER_ANOMALY = 400  # one injected segment per this many held-out steps


def robust_scale(x: np.ndarray) -> np.ndarray:
    """Per column, a normal-equivalent spread: the larger of IQR / 1.349 and the 1st-99th
    percentile range / 4.65 (a metric that idles and bursts has an IQR near 0 but a wide
    range), else the standard deviation, else 0 (constant).

    Deliberately not the detector's own normalising scale (``features._robust``): sizes are
    measured in a unit that no compared method normalises by."""
    with np.errstate(all="ignore"):
        p1, q25, q75, p99 = np.nanpercentile(x, [1, 25, 75, 99], axis=0)
        spread = np.maximum((q75 - q25) / 1.349, (p99 - p1) / 4.65)
        std = np.nanstd(x, axis=0)
    return np.nan_to_num(np.where(spread > 0, spread, std))


def inject(
    values: np.ndarray,
    fit_values: np.ndarray,
    rng: np.random.Generator,
    gap: int,
    kinds: tuple[str, ...] = KINDS,
    magnitude: tuple[float, float] = MAGNITUDE,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Anomalies injected into ``values`` [T, M] (a copy): (values, label [T], what was done).

    Segments never overlap and are at least ``gap`` steps apart (a window's length, so one
    window never sees two); nothing is injected in the first ``gap`` steps."""
    out = np.array(values, dtype=np.float64, copy=True)
    T = len(out)
    label = np.zeros(T, np.int8)
    scale = robust_scale(fit_values)
    varying = np.flatnonzero(scale > 0)
    if not len(varying):
        raise ValueError("no metric varies in the fitting part; nothing can be injected")
    done: list[dict] = []
    n = max(1, (T - gap) // STEPS_PER_ANOMALY)
    slot = (T - gap) // n
    for i in range(n):
        # One segment somewhere in each equal slot, ending at least ``gap`` before the next.
        kind = kinds[int(rng.integers(len(kinds)))]
        length = int(rng.integers(1, 6)) if kind == "spike" else int(rng.integers(*SEGMENT_STEPS))
        lo = gap + i * slot
        last_start = lo + slot - length - gap
        if last_start < lo:
            continue
        a = int(rng.integers(lo, last_start + 1))
        b = a + length
        metrics = rng.choice(varying, int(rng.integers(1, min(4, len(varying)) + 1)), False)
        size = float(np.exp(rng.uniform(*np.log(magnitude))))
        for m in metrics:
            s = scale[m] * size * (1 if rng.random() < 0.5 else -1)
            seg = out[a:b, m]
            if kind in ("spike", "level_shift"):
                seg += s
            elif kind == "drift":
                seg += s * np.linspace(1.0 / length, 1.0, length)
            elif kind == "variance":
                seg += rng.normal(0.0, abs(s) / 2, length)
            elif kind == "stuck":
                seg[:] = seg[0]
            elif kind == "surge":
                edge = np.nanmax(fit_values[:, m]) if s > 0 else np.nanmin(fit_values[:, m])
                seg[:] = edge + s
            else:  # decouple
                src = int(rng.integers(0, len(fit_values) - length))
                seg[:] = fit_values[src : src + length, m]
        label[a:b] = 1
        done.append(
            {"kind": kind, "start": a, "steps": length, "metrics": metrics.tolist(), "size": size}
        )
    return out.astype(np.float32), label, done


def _part(like, values: np.ndarray, ts: np.ndarray, label: np.ndarray | None = None):
    return series_group(
        like.name, values, like.step_seconds, like.target_names[0], label, ts=ts,
        metric_names=like.metric_names,
    )  # fmt: skip


def dev_splits(
    splits: list[Split],
    window_steps: int,
    seed: int = 0,
    test_share: float = 0.3,
    val_share: float = 0.2,
    kinds: tuple[str, ...] = KINDS,
    magnitude: tuple[float, float] = MAGNITUDE,
) -> list[Split]:
    """One development split per split with one training and one validation part (SMD,
    ASD: contiguous), built from those two parts only."""
    if not kinds:
        raise ValueError(f"no anomaly kinds to inject; known: {KINDS}")
    if unknown := set(kinds) - set(KINDS) - set(EXTRA_KINDS):
        known = KINDS + EXTRA_KINDS
        raise ValueError(f"unknown anomaly kinds {sorted(unknown)}; known: {known}")
    if not 0 < magnitude[0] <= magnitude[1]:
        raise ValueError(f"anomaly sizes must be 0 < low <= high spreads, not {magnitude}")
    out = []
    for sp in splits:
        if len(sp.train) != 1 or len(sp.val) != 1:
            raise ValueError(f"{sp.name}: a development set needs one fit and one validation part")
        g0, v0 = sp.train[0], sp.val[0]
        vf = int(sp.meta.get("val_from", 0))  # the validation part's history is the fit's end
        whole = np.concatenate([g0.values[:, 0], v0.values[vf:, 0]])
        ts = np.concatenate([g0.ts, v0.ts[vf:]])
        T = len(whole)
        a, b = round(T * (1 - test_share - val_share)), round(T * (1 - test_share))
        if min(a, b - a, T - b) < 4 * window_steps:
            raise ValueError(f"{sp.name}: {T} steps before the test part are too few")
        rng = np.random.default_rng([seed, zlib.crc32(sp.name.encode())])
        held, label, injected = inject(whole[b:], whole[:a], rng, window_steps, kinds, magnitude)
        test, hist = with_history(
            _part(g0, whole[:b], ts[:b]), _part(g0, held, ts[b:], label), window_steps - 1
        )
        fit = _part(g0, whole[:a], ts[:a])
        val, val_hist = with_history(fit, _part(g0, whole[a:b], ts[a:b]), window_steps - 1)
        meta = {
            "dev_of": sp.name,
            "fit_rows": a,
            "val_rows": b - a,
            "test_rows": T - b,
            "injected": len(injected),
            "kinds": ",".join(sorted({i["kind"] for i in injected})),
            "sizes": f"{magnitude[0]:g}-{magnitude[1]:g}",
            "val_from": val_hist,
            # What each injection changed: root-cause labels for the attribution figures.
            "interpretation": [
                {
                    "start": float(start),
                    "end": float(end),
                    "metrics": [test.metric_names[m] for m in i["metrics"]],
                }
                for i in injected
                for start, end in [
                    test.window_end_ts(hist + i["start"] + np.array([1, i["steps"]]))
                ]
            ],
        }
        out.append(
            Split(
                f"{sp.name}-dev",
                [fit],
                [val],
                [test],
                test_from=hist,
                segments=label_segments_of(test, hist),
                meta=meta,
            )
        )
    return out
