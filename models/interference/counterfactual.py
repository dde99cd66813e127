"""What-if answers against the simulator's counterfactual placements: evaluation and margin.

How right is "what if I move it there?"

    python manage.py evaluate interference --dataset sim --what-if MODEL_DIR \
        [--seed 0] [--moves 400] [--json OUT]

On a test fleet (``--seed``, simulated afresh; refused if the model was trained on that
seed) moves are drawn at random: an hour block, a window of the model's length inside it,
an instance that runs on one node for the whole window, and another node that is up for the
window. The model answers with what the app has at that moment: the instance's metrics where
it runs now, the target's instances' metrics and the target's capacity
(``InterferencePredictor.what_if``). The truth is the simulator's P of the same block
recomputed with the instance on the target (``Simulator.counterfactual_p``: the same loads,
bursts, scenario effects and noise), averaged over the window as the training labels are.

Rows (MAE in percentage points of P):

- ``telltale``: the model's what-if answer.
- ``no_change``: P after the move = the same model's prediction for each instance where it
  runs now (what a scheduler assumes when it ignores who the new neighbours are).
- ``no_change_true``: P after the move = the true P now; a reference that no deployment has
  (P is never measured), which shows how much the moves change at all.

Per row: ``moved_mae`` (the moved instance on its target), ``existing_mae`` (the target's
instances after the move), ``change_mae`` (predicted against true change of the moved
instance's P) and ``direction_accuracy`` (the share of moves that change the moved instance's
P by at least ``DIRECTION_MIN`` whose sign the answer gets right; ``None`` for an answer
that predicts no change). Telltale's row also has interval coverage and width. Beside the
rows: the model's MAE in place on the same windows (``in_place_mae``, its accuracy on this
fleet without any move), and Telltale's figures split by how contended the moved instance
is now (``by_source``): an instance slowed where it runs carries contention symptoms into
the question (docs/interference.md, limitations).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.simulator import Chunk, SimConfig, Simulator
from models.interference.calibration import apply_margin, group_margin, interval_metrics
from models.interference.data import SIM_START
from models.interference.features import CAPACITY_KEYS
from models.interference.predictor import InterferencePredictor, NeighbourInput, VictimInput

DIRECTION_MIN = 0.02  # a change of P smaller than 2 pp has no direction worth scoring
# Moves grouped by the moved instance's true P now: how slowed it is where it runs, and so
# how many contention symptoms its metrics carry into the question.
SOURCE_BANDS = ((0.0, 0.8), (0.8, 0.9), (0.9, 1.0))
MOVES_PER_BLOCK = 20


@dataclass(frozen=True)
class Move:
    block: int
    end: int  # the window's last row within the block
    instance: int
    source: int
    target: int


@dataclass
class Outcome:
    """One move's truth and answers (P in [0, 1]); ``existing_*`` per target instance."""

    move: Move
    moved_now: float
    moved_after: float
    existing_now: np.ndarray
    existing_after: np.ndarray
    answer: np.ndarray  # [1 + E, 3] what-if (P, low, high), the moved instance first
    in_place: np.ndarray  # [1 + E] predicted P where each runs now


def evaluation_fleet(seed: int, nodes: int = 50, instances: int = 400, hours: float = 24.0):
    config = SimConfig(
        seed=int(seed), n_nodes=nodes, n_instances=instances, hours=hours, start=SIM_START
    )
    return Simulator(config)


def _members(node_of: np.ndarray, present: np.ndarray, node: int, skip: int = -1) -> np.ndarray:
    on = present & (node_of == node)
    cols = np.flatnonzero(on.any(axis=0))
    return cols[cols != skip]


def _masked(vm: np.ndarray, node_of: np.ndarray, col: int, node: int) -> np.ndarray:
    """An instance's window with the steps it did not run on ``node`` blanked."""
    return np.where((node_of[:, col] == node)[:, None], vm[:, col], np.nan)


def sample_moves(
    sim: Simulator,
    n: int,
    window: int,
    seed: int = 0,
    workloads: Sequence[int] | None = None,
) -> list[Move]:
    """``n`` random moves, ``MOVES_PER_BLOCK`` per randomly chosen hour block; ``workloads``
    (archetype ids) limits which instances move."""
    rng = np.random.default_rng(seed)
    per = sim.config.steps_per_block
    blocks = [b for b in range(sim.n_blocks) if sim.block_steps(b) >= window]
    if not blocks:
        raise ValueError(f"the fleet has no hour block of {window} steps")
    needed = -(-n // MOVES_PER_BLOCK)
    picked = rng.choice(blocks, needed, replace=len(blocks) < needed)
    moves: list[Move] = []
    for b in sorted(int(x) for x in picked):
        chunk = sim.simulate_chunk(b * per, sim.block_steps(b))
        down = sim.placements.node_down(chunk.step0, chunk.step0 + chunk.n_steps, sim.fleet.n_nodes)
        for _ in range(min(MOVES_PER_BLOCK, n - len(moves))):
            end = int(rng.integers(window - 1, chunk.n_steps))
            rows = slice(end - window + 1, end + 1)
            nodes = chunk.node_of[rows]
            ok = (
                (nodes == nodes[:1]).all(axis=0)
                & (nodes[0] >= 0)
                & (~np.isnan(chunk.vm[rows]).all(axis=2)).all(axis=0)
            )
            if workloads is not None:
                ok &= np.isin(sim.fleet.inst_arch[chunk.instance_idx], list(workloads))
            up = np.flatnonzero(~down[rows].any(axis=0))
            cols = np.flatnonzero(ok)
            if not len(cols) or len(up) < 2:
                continue
            col = int(rng.choice(cols))
            source = int(nodes[0, col])
            target = int(rng.choice(up[up != source]))
            moves.append(Move(b, end, int(chunk.instance_idx[col]), source, target))
    return moves


def run_moves(model: InterferencePredictor, sim: Simulator, moves: Sequence[Move]) -> list[Outcome]:
    per = sim.config.steps_per_block
    cap = sim.fleet.capacity()
    capacity = [{k: float(cap[k][n]) for k in CAPACITY_KEYS} for n in range(sim.fleet.n_nodes)]
    out: list[Outcome] = []
    for b in sorted({m.block for m in moves}):
        in_block = [m for m in moves if m.block == b]
        chunk = sim.simulate_chunk(b * per, sim.block_steps(b))
        truths = sim.counterfactual_p(b, [{m.instance: m.target} for m in in_block])
        for m, p_after in zip(in_block, truths, strict=True):
            out.append(_outcome(model, chunk, m, p_after, capacity))
    return out


def _outcome(
    model: InterferencePredictor,
    chunk: Chunk,
    m: Move,
    p_after: np.ndarray,
    capacity: list[dict[str, float]],
) -> Outcome:
    rows = slice(m.end - model.window_steps + 1, m.end + 1)
    vm, node_of, p_now = chunk.vm[rows], chunk.node_of[rows], chunk.p[rows]
    present = ~np.isnan(vm).all(axis=2)
    col = int(np.searchsorted(chunk.instance_idx, m.instance))
    ident = [str(int(i)) for i in chunk.instance_idx]
    target = _members(node_of, present, m.target, col)
    source = _members(node_of, present, m.source, col)

    def on(node: int, cols: np.ndarray, skip: int = -1) -> list[NeighbourInput]:
        return [NeighbourInput(ident[c], _masked(vm, node_of, c, node)) for c in cols if c != skip]

    matrix = vm[:, col]
    answer = model.what_if(matrix, on(m.target, target), capacity[m.target], ident[col])
    here = [VictimInput(ident[col], matrix, on(m.source, source), capacity[m.source])]
    here += [
        VictimInput(
            ident[c], _masked(vm, node_of, c, m.target), on(m.target, target, c), capacity[m.target]
        )
        for c in target
    ]
    on_target = (node_of[:, target] == m.target) & present[:, target]
    return Outcome(
        move=m,
        moved_now=float(np.nanmean(p_now[:, col])),
        moved_after=float(np.nanmean(p_after[rows, col])),
        existing_now=_window_mean(p_now[:, target], on_target),
        existing_after=_window_mean(p_after[rows][:, target], on_target),
        answer=np.array([[p.p, p.p_low, p.p_high] for p in (answer.moved, *answer.existing)]),
        in_place=np.array([p.p for p in model.predict(here)]),
    )


def what_if_extra_margin(
    model: InterferencePredictor,
    sim: Simulator,
    workloads: Sequence[int],
    coverage: float,
    moves: int = 400,
    seed: int = 0,
) -> dict:
    """How much wider than in place the moved instance's interval must be.

    Moves of instances of ``workloads`` (held out of fitting) on the training fleet ``sim``,
    answered with the in-place margin; the extra margin is the largest per-workload conformal
    margin of those answers against the counterfactual truth, never below 0 (a what-if
    interval is never narrower than an in-place one). In place the model's error is that of a
    new window; a move adds the error of reading the instance's behaviour from where it runs.
    """
    stored, model.what_if_extra_margin = model.what_if_extra_margin, 0.0  # in place first
    try:
        drawn = sample_moves(sim, moves, model.window_steps, seed, workloads)
        outcomes = run_moves(model, sim, drawn)
    finally:
        model.what_if_extra_margin = stored
    if not outcomes:
        return {"what_if_extra_margin": 0.0, "what_if_n": 0}
    answers = np.array([o.answer[0] for o in outcomes])
    truth = np.array([o.moved_after for o in outcomes])
    groups = sim.fleet.inst_arch[[o.move.instance for o in outcomes]]
    extra = max(0.0, group_margin(answers, truth, groups, coverage))
    widened = apply_margin(answers, extra)
    return {
        "what_if_extra_margin": extra,
        "what_if_n": len(outcomes),
        "what_if_in_place_margin": interval_metrics(answers, truth),
        "what_if_validation": interval_metrics(widened, truth),
    }


def _window_mean(p: np.ndarray, valid: np.ndarray) -> np.ndarray:
    masked = np.where(valid, p, np.nan)
    keep = ~np.isnan(masked).all(axis=0)
    mean = np.full(p.shape[1], np.nan)
    mean[keep] = np.nanmean(masked[:, keep], axis=0)
    return mean


def _pp(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(100 * np.abs(x).mean()), 3) if len(x) else None


def _signed_pp(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(100 * x.mean()), 3) if len(x) else None


def _row(method: str, outcomes: Sequence[Outcome]) -> dict:
    moved_true = np.array([o.moved_after for o in outcomes])
    change_true = moved_true - np.array([o.moved_now for o in outcomes])
    ex_true = np.concatenate([o.existing_after for o in outcomes] or [np.zeros(0)])
    if method == "telltale":
        moved = np.array([o.answer[0, 0] for o in outcomes])
        change = moved - np.array([o.in_place[0] for o in outcomes])
        existing = np.concatenate([o.answer[1:, 0] for o in outcomes] or [np.zeros(0)])
    elif method == "no_change":
        moved = np.array([o.in_place[0] for o in outcomes])
        change = np.zeros(len(outcomes))
        existing = np.concatenate([o.in_place[1:] for o in outcomes] or [np.zeros(0)])
    elif method == "no_change_true":
        moved = np.array([o.moved_now for o in outcomes])
        change = np.zeros(len(outcomes))
        existing = np.concatenate([o.existing_now for o in outcomes] or [np.zeros(0)])
    else:
        raise ValueError(f"unknown what-if method {method!r}")
    big = np.abs(change_true) >= DIRECTION_MIN
    row = {
        "method": method,
        "moved_mae": _pp(moved - moved_true),
        "moved_bias": _signed_pp(moved - moved_true),
        "existing_mae": _pp(existing - ex_true),
        "change_mae": _pp(change - change_true),
        "direction_accuracy": (
            round(float(np.mean(np.sign(change[big]) == np.sign(change_true[big]))), 3)
            if big.any() and method == "telltale"
            else None
        ),
    }
    if method == "telltale":
        moved_iv = np.array([o.answer[0, 1:] for o in outcomes]).reshape(-1, 2)
        ex_iv = np.concatenate([o.answer[1:, 1:] for o in outcomes] or [np.zeros((0, 2))])
        row.update(_coverage("moved", moved_iv, moved_true))
        row.update(_coverage("existing", ex_iv, ex_true))
    return row


def _coverage(name: str, iv: np.ndarray, truth: np.ndarray) -> dict:
    ok = ~np.isnan(truth)
    inside = (iv[ok, 0] <= truth[ok]) & (truth[ok] <= iv[ok, 1])
    return {
        f"{name}_coverage": round(float(inside.mean()), 3) if ok.any() else None,
        f"{name}_width": round(float(100 * (iv[ok, 1] - iv[ok, 0]).mean()), 2)
        if ok.any()
        else None,
    }


METHODS = ("telltale", "no_change", "no_change_true")


def summarise(outcomes: Sequence[Outcome]) -> dict:
    if not outcomes:
        raise ValueError("no move could be drawn on this fleet")
    moved_now = np.array([o.moved_now for o in outcomes])
    change = np.array([o.moved_after for o in outcomes]) - moved_now
    in_place_err = np.concatenate(
        [o.in_place - np.concatenate([[o.moved_now], o.existing_now]) for o in outcomes]
    )
    return {
        "rows": [_row(m, outcomes) for m in METHODS],
        "in_place_mae": _pp(in_place_err),
        "moves": len(outcomes),
        "existing_instances": int(sum(len(o.existing_now) for o in outcomes)),
        "true_change": {
            "mean_abs_pp": _pp(change),
            "share_at_least_direction_min": round(
                float(np.mean(np.abs(change) >= DIRECTION_MIN)), 3
            ),
            "share_worse": round(float(np.mean(change <= -DIRECTION_MIN)), 3),
        },
        "by_source": _by_source(outcomes, moved_now),
    }


def _by_source(outcomes: Sequence[Outcome], moved_now: np.ndarray) -> dict:
    """Telltale's figures per band of the moved instance's true P now (lowest band: the
    most contention symptoms in its metrics), with the model's in-place error beside them."""
    out = {}
    for lo, hi in SOURCE_BANDS:
        inside = (moved_now >= lo) & ((moved_now < hi) if hi < 1.0 else (moved_now <= hi))
        if not inside.any():
            continue
        chosen = [o for o, k in zip(outcomes, inside, strict=True) if k]
        in_place = np.array([o.in_place[0] - o.moved_now for o in chosen])
        out[f"{lo:.1f}-{hi:.1f}"] = {
            "moves": int(inside.sum()),
            **_row("telltale", chosen),
            "in_place_mae": _pp(in_place),
        }
    return out


def run(args) -> dict:
    began = time.perf_counter()
    model = InterferencePredictor.load(args.what_if)
    trained_on = model.meta.get("train", {})
    if trained_on.get("dataset") is None and args.seed in trained_on.get("seeds", ()):
        raise ValueError(f"the model in {args.what_if} was trained on fleet seed {args.seed}")
    sim = evaluation_fleet(args.seed, args.nodes or 50, args.instances or 400, args.hours or 24.0)
    moves = sample_moves(sim, args.moves, model.window_steps, seed=args.seed)
    result = {
        "dataset": "sim",
        "protocol": "what-if",
        "model": str(Path(args.what_if)),
        "seed": args.seed,
        **summarise(run_moves(model, sim, moves)),
    }
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def format_table(result: dict) -> str:
    lines = [
        f"what-if placement on simulated fleet seed {result['seed']}: {result['moves']} moves, "
        f"{result['existing_instances']} instances already on the targets "
        f"(model's MAE in place: {result['in_place_mae']} pp)",
        f"{'method':<16} {'moved pp':>9} {'existing pp':>12} {'change pp':>10} "
        f"{'direction':>10} {'coverage':>9}",
    ]
    for r in result["rows"]:
        direction = r["direction_accuracy"]
        cov = r.get("moved_coverage")
        lines.append(
            f"{r['method']:<16} {r['moved_mae']:>9.2f} {r['existing_mae']:>12.2f} "
            f"{r['change_mae']:>10.2f} {'-' if direction is None else f'{direction:.3f}':>10} "
            f"{'-' if cov is None else f'{cov:.3f}':>9}"
        )
    for band, r in result["by_source"].items():
        lines.append(
            f"  telltale, moved instance's true P now {band}: {r['moves']} moves, "
            f"moved {r['moved_mae']:.2f} pp (bias {r['moved_bias']:+.2f}), "
            f"in place {r['in_place_mae']:.2f} pp"
        )
    tc = result["true_change"]
    lines.append(
        f"true change of the moved instance's P: mean |change| {tc['mean_abs_pp']} pp, "
        f"{100 * tc['share_at_least_direction_min']:.0f} % of moves change it by >= "
        f"{100 * DIRECTION_MIN:.0f} pp, {100 * tc['share_worse']:.0f} % make it worse"
    )
    lines.append(f"{result.get('seconds', 0):.0f} s")
    return "\n".join(lines)
