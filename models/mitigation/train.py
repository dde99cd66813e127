"""``train(cfg) -> TrainResult``: fit the causal engine on a history, tune the fallback
thresholds on a validation split, and write a self-contained artefact directory:

    engine.joblib   the fitted CausalEngine (forests, nuisances, OOD detector, explainer)
    config.json     the TrainConfig (engine and policy settings included)
    policy.json     the PolicyConfig with the tuned thresholds
    metrics.json    fit metrics, the tuning trade-off table, library versions, data hash

``load(dir)`` reads it back. joblib files execute code when loaded: load only artefacts
this installation wrote.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from models.mitigation.data import (
    OUTCOMES,
    PRIMARY,
    RowError,
    SimTruth,
    data_hash,
    read_history_csv,
    simulated_history,
)
from models.mitigation.engine import CausalEngine, EngineConfig
from models.mitigation.policy import Policy, PolicyConfig
from models.mitigation.tuning import tune_thresholds

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    source: str = "sim"  # "sim" (simulator seeds) or "csv" (a history file at ``path``)
    path: str | None = None
    n_events: int = 5000  # sim: training events
    seed: int = 1000  # sim: training fleet
    val_events: int = 2500  # sim: validation events, from fleet ``val_seed``
    val_seed: int | None = None  # default seed + 1
    val_fraction: float = 0.2  # csv: the most recent share of rows is the validation split
    tune: bool = True
    tolerance: float = 0.01
    engine: EngineConfig = field(default_factory=EngineConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    out_dir: str | None = None

    @property
    def validation_seed(self) -> int:
        return self.seed + 1 if self.val_seed is None else self.val_seed

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("engine", "policy")}
        d["engine"] = self.engine.to_dict()
        d["policy"] = self.policy.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        engine = EngineConfig.from_dict(d.pop("engine", {}))
        policy = PolicyConfig.from_dict(d.pop("policy", {}))
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(engine=engine, policy=policy, **known)


@dataclass
class TrainResult:
    engine: CausalEngine
    policy_config: PolicyConfig
    config: TrainConfig
    metrics: dict
    data_hash: str
    out_dir: str | None = None

    def policy(self) -> Policy:
        return Policy(self.engine, self.policy_config)


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    val_truth: SimTruth | None
    errors: list[RowError]


def load_splits(cfg: TrainConfig) -> Splits:
    """Training and validation events as ``cfg`` describes them (validated for csv)."""
    if cfg.source == "sim":
        train, _ = simulated_history(cfg.n_events, cfg.seed)
        val, val_truth = simulated_history(cfg.val_events, cfg.validation_seed)
        return Splits(train, val, val_truth, [])
    if cfg.source != "csv" or not cfg.path:
        raise ValueError("source must be 'sim', or 'csv' with a path")
    frame, errors = read_history_csv(cfg.path, cfg.engine.actions)
    if frame.empty:
        raise ValueError(f"no usable rows in {cfg.path}: {errors[:3]}")
    if "ts" in frame.columns:
        # Validate on the most recent events, the ones most like tomorrow's.
        frame = frame.iloc[np.argsort(pd.to_datetime(frame["ts"], utc=True).to_numpy())]
    cut = round(len(frame) * (1 - cfg.val_fraction))
    return Splits(frame.iloc[:cut], frame.iloc[cut:], None, errors)


def train(cfg: TrainConfig, splits: Splits | None = None) -> TrainResult:
    """Fit and tune on ``cfg``'s data, or on ``splits`` when the caller already holds it."""
    started = time.perf_counter()
    splits = splits or load_splits(cfg)
    weights = cfg.policy.weights()
    outcomes = tuple(dict.fromkeys((*cfg.engine.outcomes, *weights)))
    missing = [o for o in outcomes if o not in splits.train.columns]
    if missing:
        raise ValueError(f"the history has no {missing} column, needed by the cost weights")
    engine_cfg = EngineConfig.from_dict({**cfg.engine.to_dict(), "outcomes": list(outcomes)})
    log.info(
        "fitting the causal engine on %d logged events (%d outcomes), %d held out",
        len(splits.train),
        len(outcomes),
        len(splits.val),
    )
    engine = CausalEngine().fit(
        splits.train, splits.train["action"], splits.train[list(outcomes)], engine_cfg
    )
    policy = Policy(engine, cfg.policy)
    metrics: dict = {"engine": engine.metrics}
    if cfg.tune and len(splits.val):
        log.info("tuning the policy's thresholds on %d validation events", len(splits.val))
        a_idx = np.array([engine.actions.index(a) for a in splits.val["action"]])
        tuning = tune_thresholds(
            policy,
            splits.val,
            a_idx,
            splits.val[PRIMARY].to_numpy(dtype=float),
            truth=splits.val_truth,
            tolerance=cfg.tolerance,
            seed=engine_cfg.random_state,
        )
        policy_cfg = tuning.config
        metrics["tuning"] = tuning.summary()
        log.info("policy tuned at %.0fs", time.perf_counter() - started)
    else:
        policy_cfg = cfg.policy
    cols = [c for c in (*engine_cfg.covariates, "action", *OUTCOMES) if c in splits.train]
    digest = data_hash(splits.train, tuple(cols))
    metrics.update(
        {
            "data_hash": digest,
            "n_train": len(splits.train),
            "n_validation": len(splits.val),
            "rejected_rows": len({e.row for e in splits.errors}),
            "seconds": round(time.perf_counter() - started, 2),
            "versions": {p: version(p) for p in ("econml", "scikit-learn", "lightgbm")},
        }
    )
    result = TrainResult(engine, policy_cfg, cfg, metrics, digest, cfg.out_dir)
    if cfg.out_dir:
        save(result, cfg.out_dir)
    return result


def save(result: TrainResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(result.engine, out / "engine.joblib", compress=3)
    (out / "config.json").write_text(json.dumps(result.config.to_dict(), indent=1))
    (out / "policy.json").write_text(json.dumps(result.policy_config.to_dict(), indent=1))
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=1, default=float))
    result.out_dir = str(out)
    return out


def load(out_dir: str | Path) -> TrainResult:
    out = Path(out_dir)
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    metrics = json.loads((out / "metrics.json").read_text())
    engine = joblib.load(out / "engine.joblib")
    policy_cfg = PolicyConfig.from_dict(json.loads((out / "policy.json").read_text()))
    return TrainResult(engine, policy_cfg, config, metrics, metrics["data_hash"], str(out))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.mitigation.train")
    parser.add_argument("--out", required=True, help="artefact directory to write")
    parser.add_argument("--csv", default=None, help="train on this history instead of sim")
    parser.add_argument("--events", type=int, default=TrainConfig.n_events)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--val-events", type=int, default=TrainConfig.val_events)
    parser.add_argument("--trees", type=int, default=EngineConfig.n_estimators)
    parser.add_argument("--capacity-weight", type=float, default=0.0)
    parser.add_argument("--interruption-weight", type=float, default=0.0)
    parser.add_argument("--tolerance", type=float, default=TrainConfig.tolerance)
    args = parser.parse_args(argv)
    cfg = TrainConfig(
        source="csv" if args.csv else "sim",
        path=args.csv,
        n_events=args.events,
        seed=args.seed,
        val_events=args.val_events,
        tolerance=args.tolerance,
        engine=EngineConfig(n_estimators=args.trees),
        policy=PolicyConfig(
            capacity_weight=args.capacity_weight, interruption_weight=args.interruption_weight
        ),
        out_dir=args.out,
    )
    result = train(cfg)
    chosen = (result.metrics.get("tuning") or {}).get("chosen")
    summary = {"out": result.out_dir, "data_hash": result.data_hash, "thresholds": chosen}
    print(json.dumps(summary | {"seconds": result.metrics["seconds"]}, indent=1))


if __name__ == "__main__":
    main()
