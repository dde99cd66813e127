"""Dev-seed probe: does averaging the LSTM member over several seeds make the ensemble's
gain less dependent on one LSTM draw?

    PYTHONPATH=. python benchmarks/experiments/interference_lstm_seeds.py --seed 7 \
        --artefacts DIR        # DIR = evaluate --keep DIR of an ensemble run, same seed

For each partition, rebuilds the fitting and validation windows as the evaluation draws them
(model seed 0), trains extra LSTMs with other seeds exactly as ``train()`` trains its member,
and reports the test MAE of: the transformer, each LSTM, the served mean (transformer and the
kept LSTM), and the transformer averaged with the mean of all LSTMs. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json

import lightning as L
import numpy as np
import torch

from ingest.simulator import ARCHETYPES
from models.interference.components import build_member
from models.interference.data import simulated_windows, subsample
from models.interference.module import fit_best_epoch, predict_array
from models.interference.predictor import InterferencePredictor
from models.interference.train import TrainConfig, split_by_group

FLEET = {"n_nodes": 50, "n_instances": 400, "hours": 24, "window": 20, "stride": 60}


def _mae(p: np.ndarray, y: np.ndarray) -> float:
    return round(float(100 * np.abs(p - y).mean()), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--artefacts", required=True)
    parser.add_argument("--extra-seeds", default="1000,2000")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig()
    test_all = simulated_windows([args.seed], **FLEET)
    rng = np.random.default_rng(args.seed)
    rows = []
    for k in range(args.partitions):
        held = sorted(int(a) for a in rng.choice(len(ARCHETYPES), 3, False))
        pool = simulated_windows([args.seed + 1_000_003 * (k + 1)], **FLEET, exclude=held)
        pool = pool.take(~np.isnan(pool.p))
        fit, val, _ = split_by_group(pool, 2, args.seed + k)
        fit, val = subsample(fit, cfg.max_train_windows, k), subsample(val, 3000, k + 1)
        test = test_all.take(np.isin(test_all.group, held) & ~np.isnan(test_all.p))
        model = InterferencePredictor.load(f"{args.artefacts}/partition{k + 1}")
        enc_fit, enc_val = model.scaler.encode(fit), model.scaler.encode(val)
        enc_test = model.scaler.encode(test)
        t = predict_array(model.nets["transformer"], enc_test)[:, 0]
        lstms = [predict_array(model.nets["lstm"], enc_test)[:, 0]]
        for extra in [int(s) for s in args.extra_seeds.split(",")]:
            L.seed_everything(k + extra, verbose=False)
            net = build_member("lstm", model.scaler.dims, {}, cfg.lstm_hidden)
            fit_best_epoch(
                net, enc_fit, enc_val, epochs=cfg.lstm_epochs, batch_size=cfg.batch_size,
                seed=k + extra, lr=cfg.lr, weight_decay=cfg.weight_decay,
                warmup_fraction=cfg.warmup_fraction, quantiles=cfg.quantiles,
            )  # fmt: skip
            lstms.append(predict_array(net, enc_test)[:, 0])

        row = {
            "partition": k + 1,
            "transformer": _mae(t, test.p),
            "lstms": [_mae(x, test.p) for x in lstms],
            "served": _mae((t + lstms[0]) / 2, test.p),
            "t_plus_mean_lstms": _mae((t + np.mean(lstms, axis=0)) / 2, test.p),
            "t_plus_each_lstm": [_mae((t + x) / 2, test.p) for x in lstms],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = ("transformer", "served", "t_plus_mean_lstms")
    print(
        json.dumps(
            {"seed": args.seed, **{k: round(float(np.mean([r[k] for r in rows])), 2) for k in keys}}
        )
    )


if __name__ == "__main__":
    main()
