"""Does an alarm point at the right metrics and log lines? Attribution on the simulator.

The simulator knows what each anomaly case did: the metrics its scenario changes on the
case's target (``ScenarioSpec.effects``) and the log lines the case wrote (their
template-table indices, ``SimData.case_templates``). For every anomaly case that Telltale
detects, its attribution is merged over the flagged windows inside the case, weighted by
score, as an event's is (``postprocess.merge_attributions``), and scored:

- ``metric_hit_at_1`` / ``metric_hit_at_3``: the share of detected cases whose top one /
  top three metrics include a metric the scenario changes;
- ``template_hit_at_3``: the share of detected cases that wrote log lines whose top three
  templates include one of them (``cases_with_lines`` of them).

The same figures for a ``deviation`` ranking of the same windows, the explanation a tool
without a model gives: metrics by how far their last patch left the window's own history
(robust z of the normalised values), templates by how much more often they occur in the
last patch than before it. ``chance`` is the expected hit rate of a random ranking.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from math import comb

import numpy as np

from ingest.simulator import CATALOGUE
from models.anomaly.attribution import ranked_shares
from models.anomaly.features import FeatureSpec, SeriesGroup, transform
from models.anomaly.metrics import Segment
from models.anomaly.pipeline import Scored
from models.anomaly.postprocess import merge_attributions

Ranked = list[tuple[str, float]]


def changed_metrics(scenario: str, level: str) -> set[str]:
    """Metrics a scenario changes on its own target (``level`` "vm" or "host")."""
    return {
        e.metric
        for e in CATALOGUE.get(scenario).effects
        if e.where == "self" and e.metric.startswith(f"{level}_")
    }


def deviation_metrics(
    values: np.ndarray, spec: FeatureSpec, target: str, patch: int, top: int = 5
) -> Ranked:
    """Metrics of one window [W, M] ranked by |last patch - history median| / history MAD,
    in the spec's normalised units (the MAD floored at 0.1 of them)."""
    center, scale = (np.atleast_2d(a)[0] for a in spec.stats([target]))
    x = (transform(values[None], spec.kinds)[0] - center) / np.maximum(scale, 1e-9)
    hist, last = x[:-patch], x[-patch:]
    # All-NaN columns are expected: metrics a target does not export.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(hist, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(hist - med), axis=0)
        z = np.abs(np.nanmean(last, axis=0) - med) / np.maximum(np.nan_to_num(mad), 0.1)
    z = np.nan_to_num(z, nan=0.0)
    return ranked_shares(spec.metric_names, z, top)


def deviation_templates(
    step: np.ndarray, template: np.ndarray, count: np.ndarray, window: int, patch: int, texts
) -> Ranked:
    """Templates of one window ranked by (lines in the last patch + 1) / (lines expected
    there from the window's history + 1); only templates present in the last patch."""
    last = step >= window - patch
    out: dict[int, float] = {}
    for t in np.unique(template[last]):
        now = count[last & (template == t)].sum()
        before = count[~last & (template == t)].sum() * patch / (window - patch)
        out[int(t)] = float((now + 1) / (before + 1))
    ids = list(out)
    return ranked_shares([texts[i] for i in ids], np.array([out[i] for i in ids]))


def hits(ranked: Ranked, truth: set[str], k: int) -> bool:
    return any(name in truth for name, _ in ranked[:k])


def chance_hit(n: int, k_true: int, k: int) -> float:
    """Probability that a random ranking of ``n`` items puts one of ``k_true`` in its top k."""
    if n <= 0 or k_true <= 0:
        return 0.0
    k = min(k, n)
    return 1.0 - comb(n - min(k_true, n), k) / comb(n, k)


def explained_cases(
    scored: Sequence[Scored],
    segments: Sequence[Segment],
    levels: dict[str, float],
) -> list[tuple[Segment, Scored, np.ndarray, np.ndarray]]:
    """(case, its group's scores, flagged window indices inside the case, their scores) for
    every anomaly case with at least one flagged window of its own target."""
    out = []
    for seg in segments:
        if seg.kind != "anomaly":
            continue
        for s in scored:
            names = [n for n in seg.targets if n in s.targets]
            if not names:
                continue
            target = s.targets.index(names[0])
            inside = (
                (s.keys[:, 0] == target)
                & (s.times >= seg.start)
                & (s.times <= seg.end)
                & (s.calibrated >= levels[s.group])
            )
            idx = np.flatnonzero(inside)
            if len(idx):
                out.append((seg, s, idx, s.calibrated[idx]))
    return out


def evaluate_attribution(
    det,
    groups: dict[str, SeriesGroup],
    specs: dict[str, FeatureSpec],
    scored: Sequence[Scored],
    segments: Sequence[Segment],
    levels: dict[str, float],
    case_templates: dict[int, frozenset[int]],
) -> dict:
    """The figures above for ``det`` (an ``AnomalyDetector``) on scored test groups."""
    cases = explained_cases(scored, segments, levels)
    W, patch = det.window_steps, det.shape.patch_steps
    texts = det.table.texts if det.table is not None else []
    tally = {m: {"m1": 0, "m3": 0, "t3": 0} for m in ("telltale", "deviation")}
    with_lines = 0
    chance_m3, chance_t3 = [], []
    for seg, s, idx, weights in cases:
        g, spec = groups[s.group], specs[s.group]
        keys = s.keys[idx]
        explained = det.explain_group(g, keys, spec)
        target_name = g.target_names[int(keys[0, 0])]
        values = g.window_values(keys[:, 0], keys[:, 1], W)
        dev_m = [deviation_metrics(v, spec, target_name, patch) for v in values]
        dev_t: list[Ranked] = [[] for _ in range(len(keys))]
        seen: set[int] = set()  # templates in the case's flagged windows
        if g.logs is not None and texts:
            win, step, tmpl, count = g.logs.window_entries(keys[:, 0], keys[:, 1], W)
            seen = {int(t) for t in tmpl}
            dev_t = [
                deviation_templates(
                    step[win == i], tmpl[win == i], count[win == i], W, patch, texts
                )
                for i in range(len(keys))
            ]
        w = [float(x) for x in weights]
        rankings = {
            "telltale": (
                merge_attributions([m for m, _ in explained], w),
                merge_attributions([t for _, t in explained], w),
            ),
            "deviation": (merge_attributions(dev_m, w), merge_attributions(dev_t, w)),
        }
        truth_m = changed_metrics(seg.scenario, s.group)
        truth_t = {texts[i] for i in case_templates.get(seg.case_id, ())} if texts else set()
        for name, (metrics, templates) in rankings.items():
            tally[name]["m1"] += hits(metrics, truth_m, 1)
            tally[name]["m3"] += hits(metrics, truth_m, 3)
            tally[name]["t3"] += bool(truth_t) and hits(templates, truth_t, 3)
        chance_m3.append(chance_hit(len(spec.metric_names), len(truth_m), 3))
        if truth_t:
            with_lines += 1
            chance_t3.append(chance_hit(len(seen), len(truth_t & {texts[i] for i in seen}), 3))
    n = len(cases)

    def share(x: int, of: int) -> float | None:
        return round(x / of, 3) if of else None

    return {
        "cases_explained": n,
        "cases_with_lines": with_lines,
        **{
            name: {
                "metric_hit_at_1": share(t["m1"], n),
                "metric_hit_at_3": share(t["m3"], n),
                "template_hit_at_3": share(t["t3"], with_lines),
            }
            for name, t in tally.items()
        },
        "chance": {
            "metric_hit_at_3": round(float(np.mean(chance_m3)), 3) if chance_m3 else None,
            "template_hit_at_3": round(float(np.mean(chance_t3)), 3) if chance_t3 else None,
        },
    }


def attribution_note(figures: dict) -> str:
    """One line for the evaluation table."""

    def f(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    tt, dev, ch = figures["telltale"], figures["deviation"], figures["chance"]
    return (
        f"attribution of {figures['cases_explained']} detected anomaly cases: a changed "
        f"metric in the top 1 / top 3: telltale {f(tt['metric_hit_at_1'])} / "
        f"{f(tt['metric_hit_at_3'])}, deviation {f(dev['metric_hit_at_1'])} / "
        f"{f(dev['metric_hit_at_3'])}, chance - / {f(ch['metric_hit_at_3'])}; one of the "
        f"case's own log templates in the top 3 ({figures['cases_with_lines']} cases wrote "
        f"lines): telltale {f(tt['template_hit_at_3'])}, deviation "
        f"{f(dev['template_hit_at_3'])}, chance {f(ch['template_hit_at_3'])}"
    )


ROOT_CAUSE_LEVELS = (100, 150)  # HitRate@P%: the top floor(P % x |labelled|) dimensions


def root_cause_hits(
    det,
    group: SeriesGroup,
    spec: FeatureSpec,
    scored: Scored,
    level: float,
    labelled: Sequence[dict],
) -> dict:
    """Labelled root causes of real incidents (SMD, ASD ``interpretation_label``) against
    Telltale's and the deviation ranking's metrics, merged over the flagged windows inside
    each detected segment: HitRate@P% = labelled metrics among the top floor(P % x |L|), over
    |L| (InterFusion's measure). Sums over segments, so splits can be pooled."""
    M, W, patch = len(spec.metric_names), det.window_steps, det.shape.patch_steps
    sums = {m: [0.0] * len(ROOT_CAUSE_LEVELS) for m in ("telltale", "deviation", "chance")}
    n = 0
    for seg in labelled:
        inside = (scored.times >= seg["start"]) & (scored.times <= seg["end"])
        idx = np.flatnonzero(inside & (scored.calibrated >= level))
        truth = set(seg["metrics"])
        if not len(idx) or not truth:
            continue
        n += 1
        keys, w = scored.keys[idx], [float(x) for x in scored.calibrated[idx]]
        target = group.target_names[int(keys[0, 0])]
        explained = det.explain_group(group, keys, spec, top=M)
        values = group.window_values(keys[:, 0], keys[:, 1], W)
        rankings = {
            "telltale": merge_attributions([m for m, _ in explained], w, top=M),
            "deviation": merge_attributions(
                [deviation_metrics(v, spec, target, patch, top=M) for v in values], w, top=M
            ),
        }
        for j, pct in enumerate(ROOT_CAUSE_LEVELS):
            k = int(np.floor(pct / 100 * len(truth)))
            for name, ranked in rankings.items():
                sums[name][j] += len({m for m, _ in ranked[:k]} & truth) / len(truth)
            sums["chance"][j] += min(k, M) / M
    return {"segments": n, "sums": sums}


def pooled_root_cause(parts: Sequence[dict]) -> dict | None:
    """HitRate@P% per method over every detected labelled segment of every split."""
    n = sum(p["segments"] for p in parts)
    if not n:
        return None
    out: dict = {"segments_detected": n}
    for method in ("telltale", "deviation", "chance"):
        out[method] = {
            f"hit_rate_{pct}": round(sum(p["sums"][method][j] for p in parts) / n, 3)
            for j, pct in enumerate(ROOT_CAUSE_LEVELS)
        }
    return out


def root_cause_note(figures: dict) -> str:
    tt, dev, ch = figures["telltale"], figures["deviation"], figures["chance"]
    return (
        f"root causes of {figures['segments_detected']} detected labelled segments "
        f"(interpretation_label), HitRate@100% / @150%: telltale {tt['hit_rate_100']:.2f} / "
        f"{tt['hit_rate_150']:.2f}, deviation {dev['hit_rate_100']:.2f} / "
        f"{dev['hit_rate_150']:.2f}, chance {ch['hit_rate_100']:.2f} / {ch['hit_rate_150']:.2f}"
    )
