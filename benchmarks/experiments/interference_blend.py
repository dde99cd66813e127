"""Dev-seed probe: does averaging Telltale with the LSTM and LightGBM lower the error on
unseen workloads? Runs ``models.interference.evaluate`` unchanged and records every
method's predictions on the validation and test windows of each partition.

    PYTHONPATH=. python benchmarks/experiments/interference_blend.py --seed 7 --partitions 3 \
        --threads 1 --members transformer

(``--members transformer`` since the ensemble landed: the probe's "telltale" is the
transformer alone, as when it was run, before the ensemble existed.)

Prints one JSON line per partition and a summary line. Blend weights (non-negative, summing
to one) are chosen on the validation workloads only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

import models.interference.evaluate as E
from models.interference.baselines import Baseline
from models.interference.data import subsample
from models.interference.predictor import InterferencePredictor
from models.interference.train import train

BLENDED = ("lstm", "gradient_boosting", "random_forest")
RESULTS: list[dict] = []


def _mae(pred: np.ndarray, y: np.ndarray) -> float:
    return float(100 * np.abs(pred - y).mean())


def _val_weights(val: dict[str, np.ndarray], y: np.ndarray, names: list[str]) -> np.ndarray:
    """Grid of weights in steps of 0.1 that minimises validation MAE."""
    best, best_w = np.inf, None
    grid = np.round(np.arange(0, 1.01, 0.1), 2)
    for w in itertools.product(grid, repeat=len(names) - 1):
        last = 1 - sum(w)
        if last < -1e-9:
            continue
        ws = np.array([*w, last])
        mae = _mae(sum(wi * val[n] for wi, n in zip(ws, names, strict=True)), y)
        if mae < best:
            best, best_w = mae, ws
    return best_w


def run_partition(fit, val, test, names, methods, settings, cfg, log):
    result = train(cfg, data=(fit, val, names))
    model = InterferencePredictor.load(result.out_dir)
    test_pred = {"telltale": model.predict_windows(test)[:, 0]}
    val_pred = {"telltale": model.predict_windows(val)[:, 0]}
    fit_s = subsample(fit, cfg.max_train_windows, cfg.seed)
    val_s = subsample(val, cfg.max_val_windows, cfg.seed + 1)
    enc_fit, enc_val = model.scaler.encode(fit_s), model.scaler.encode(val_s)
    for m in BLENDED:
        b = Baseline(m, settings["baselines"]).fit(enc_fit, enc_val)
        test_pred[m] = b.predict(model.scaler.encode(test))
        val_pred[m] = b.predict(model.scaler.encode(val))
    out: dict = {m: _mae(p, test.p) for m, p in test_pred.items()}
    for combo in (("telltale", "lstm"), ("telltale", "gradient_boosting"),
                  ("telltale", "lstm", "gradient_boosting"),
                  ("telltale", "lstm", "gradient_boosting", "random_forest")):  # fmt: skip
        key = "+".join(combo)
        out[f"mean({key})"] = _mae(np.mean([test_pred[c] for c in combo], 0), test.p)
        w = _val_weights(val_pred, val.p, list(combo))
        out[f"valw({key})"] = _mae(
            sum(wi * test_pred[c] for wi, c in zip(w, combo, strict=True)), test.p
        )
        out[f"valw({key})_weights"] = [float(x) for x in w]
    out = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}
    RESULTS.append(out)
    print(json.dumps(out), flush=True)
    log(json.dumps(out))
    return {"telltale": {"mae": out["telltale"], "mse": 0.0, "seconds": 0.0}}


def main() -> None:
    parser = argparse.ArgumentParser()
    E.add_arguments(parser)
    args = parser.parse_args(["--dataset", "sim", "--methods", "telltale", *sys.argv[1:]])
    E._run_partition = run_partition
    E.run(args, log=lambda s: print(s, file=sys.stderr, flush=True))
    keys = [k for k in RESULTS[0] if not k.endswith("_weights")]
    mean = {k: round(float(np.mean([r[k] for r in RESULTS])), 2) for k in keys}
    print(json.dumps({"seed": args.seed, "mean": mean}))


if __name__ == "__main__":
    main()
