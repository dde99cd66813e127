"""Features: transforms, robust normalisation, time features, log stores and bags."""

import numpy as np
import pytest

from models.anomaly.features import (
    CLIP_GLOBAL,
    LogStore,
    SeriesGroup,
    fit_spec,
    log_batch,
    metric_summaries,
    time_features,
    transform,
    windows_of,
)
from models.anomaly.logmining import TemplateTable


def test_counter_becomes_increase_and_resets_are_zero():
    x = np.array([[[10.0], [12.0], [15.0], [1.0], [4.0]]], np.float32)  # [B, T, M]
    out = transform(x, ["diff"])[0, :, 0]
    expected = np.sign([0, 2, 3, 0, 3]) * np.log1p([0, 2, 3, 0, 3])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_fit_spec_picks_transforms_and_robust_scale():
    rng = np.random.default_rng(0)
    T, K = 500, 4
    values = np.stack(
        [
            rng.normal(0.5, 0.1, (T, K)),  # a ratio
            rng.lognormal(10, 2, (T, K)),  # heavy-tailed bytes
            np.cumsum(rng.poisson(1, (T, K)), axis=0),  # counter
        ],
        axis=-1,
    ).astype(np.float32)
    spec = fit_spec(values, ["cpu_ratio", "bytes_per_second", "restarts_total"])
    assert spec.kinds == ["none", "log", "diff"]
    assert abs(spec.center[0] - 0.5) < 0.05
    assert all(s > 0 for s in spec.scale)


def test_summaries_are_relative_to_history_and_count_missing():
    spec = fit_spec(np.ones((50, 1, 2), np.float32) * np.array([1.0, 5.0]), ["a", "b"])
    spec.scale = [1.0, 1.0]
    W, p = 12, 4
    v = np.full((1, W, 2), 3.0, np.float32)
    v[0, -p:, 0] = 7.0  # jump in the last patch of metric a
    v[0, 2, 1] = np.nan
    v[0, 4:8, 1] = np.nan  # a whole patch of b missing
    s = metric_summaries(v, spec, p)
    assert s.shape == (1, 3, 2, 5)
    assert s[0, -1, 0, 2] > 3 and s[0, -1, 0, 3] > 3  # local mean and peak: far above history
    assert s[0, 0, 0, 2] == 0 and s[0, 0, 0, 1] == 0  # history: at its own level, flat
    assert s[0, -1, 0, 0] == 7.0 - spec.center[0]  # global: centred on the training median
    assert s[0, 0, 1, 4] == 0.25 and s[0, 1, 1, 4] == 1.0 and s[0, 1, 1, 0] == 0.0
    assert np.isfinite(s).all()


def test_per_target_statistics_keep_small_and_large_targets_unsaturated():
    # Four pods with millisecond latencies and one with seconds: pooled statistics put the
    # large pod far out all the time and make the small pods' own excursions invisible;
    # per-target statistics put every pod near its own centre.
    rng = np.random.default_rng(0)
    T, W, p = 400, 12, 4
    series = [rng.normal(0.002, 0.0005, T) for _ in range(4)] + [rng.normal(2.0, 0.5, T)]
    values = np.stack(series, axis=1)[..., None].astype(np.float32)  # [T, 5, 1]
    names = ["s1", "s2", "s3", "s4", "big"]
    pooled = fit_spec(values, ["latency"])
    per = fit_spec(values, ["latency"], target_names=names)
    assert pooled.target_center == {} and set(per.target_center) == set(names)
    windows = np.moveaxis(values[:W], 0, 1)  # [5, W, 1]
    g_pooled = metric_summaries(windows, pooled, p, names)[:, :, 0, 0]  # no per-target: pooled
    g_per = metric_summaries(windows, per, p, names)[:, :, 0, 0]
    assert (np.abs(g_pooled[-1]) > 5).all()  # the large pod sits far out all the time
    assert np.abs(g_per).max() < 0.25 * CLIP_GLOBAL  # every pod near its own centre
    # A small pod's own 4-sigma excursion is plain per target and invisible pooled.
    bump = windows.copy()
    bump[0, -p:, 0] += 0.002
    d_pooled = metric_summaries(bump, pooled, p, names)[0, -1, 0, 0] - g_pooled[0, -1]
    d_per = metric_summaries(bump, per, p, names)[0, -1, 0, 0] - g_per[0, -1]
    assert d_per > 1.5 and d_pooled < 0.1
    # A target unknown to the spec (a new fleet) falls back to the pooled statistics.
    np.testing.assert_array_equal(
        metric_summaries(windows, per, p, ["new"] * 5), metric_summaries(windows, pooled, p)
    )


def test_per_target_scale_of_a_constant_series_is_the_pooled_one():
    T = 100
    rng = np.random.default_rng(1)
    values = np.stack([np.full(T, 3.0), rng.normal(0, 1, T)], axis=1)[..., None]
    spec = fit_spec(values.astype(np.float32), ["x"], target_names=["flat", "noisy"])
    assert spec.target_center["flat"] == [3.0]
    assert spec.target_scale["flat"] == spec.scale  # not zero: no infinite z-score
    assert spec.target_scale["noisy"][0] >= 0.01 * spec.scale[0]


def test_ordinary_spikes_of_a_two_level_series_stay_inside_the_clip():
    # 5 ms most of the time, 20 s in 6 % of minutes (a Nezha pod's client latency): the
    # IQR alone would put every ordinary spike at the clip; the range floor keeps the
    # series' own 99th percentile at half the clip, so larger excursions still rank higher.
    rng = np.random.default_rng(3)
    T = 1000
    lat = np.where(rng.random(T) < 0.06, 20.0, 0.005) + rng.normal(0, 1e-4, T)
    spec = fit_spec(lat[:, None, None].astype(np.float32), ["latency_seconds"])
    z = (transform(lat[None, :, None], spec.kinds)[0, :, 0] - spec.center[0]) / spec.scale[0]
    assert np.abs(z).max() <= 0.5 * CLIP_GLOBAL + 1e-3
    # A steady series keeps its IQR scale.
    steady = rng.normal(1.0, 0.1, (T, 1, 1)).astype(np.float32)
    q25, q75 = np.percentile(steady, [25, 75])
    assert fit_spec(steady, ["x"]).scale[0] == pytest.approx(q75 - q25, rel=1e-6)


def test_single_target_statistics_equal_the_pooled_ones():
    rng = np.random.default_rng(2)
    values = rng.lognormal(0, 1, (300, 1, 3)).astype(np.float32)
    spec = fit_spec(values, ["a", "b", "c"], target_names=["only"])
    np.testing.assert_allclose(spec.target_center["only"], spec.center)
    np.testing.assert_allclose(spec.target_scale["only"], spec.scale)


def test_time_features_follow_the_clock():
    monday_noon = 1_736_121_600 + 12 * 3600
    tf = time_features(np.array([monday_noon, monday_noon + 86_400 * 7]), 300, 3)
    assert tf.shape == (2, 3, 4)
    np.testing.assert_allclose(tf[0], tf[1], atol=1e-6)  # same time a week later
    np.testing.assert_allclose(tf[0, -1, :2], [0.0, -1.0], atol=1e-6)  # noon


def test_log_store_windows_and_bags():
    table = TemplateTable(256)
    a, b = table.add("disk <*> full"), table.add("backup started")
    # target 0: template a twice at step 3, b at step 9; target 1: b at step 2
    store = LogStore.build(
        2, 12, np.array([0, 0, 0, 1]), np.array([3, 3, 9, 2]), np.array([a, a, b, b])
    )
    win, in_w, tmpl, count = store.window_entries(np.array([0, 1]), np.array([12, 8]), 8)
    rows = sorted(zip(win.tolist(), in_w.tolist(), tmpl.tolist(), count.tolist(), strict=True))
    assert rows == [(0, 5, b, 1.0), (1, 2, b, 1.0)]  # step 3 of target 0 is outside [4, 12)
    win, in_w, tmpl, count = store.window_entries(np.array([0]), np.array([12]), 12)
    bags = log_batch(win, in_w, tmpl, count, 4, 3, table)
    weights = dict(zip(bags.bag.tolist(), bags.weight.tolist(), strict=True))
    assert weights[0] == pytest.approx(np.log1p(2.0))  # patch 0: template a twice
    assert weights[2] == pytest.approx(np.log1p(1.0))  # patch 2: template b once
    assert len(bags.offsets) == 2


def test_windows_skip_targets_that_are_not_running():
    values = np.ones((10, 2, 1), np.float32)
    values[:, 1] = np.nan
    g = SeriesGroup("vm", ["m"], np.arange(10) * 15, 15, values, ["a", "b"])
    keys = windows_of(g, 4, 2, 4)
    assert set(keys[:, 0]) == {0}
    assert keys[:, 1].tolist() == [4, 6, 8, 10]


def test_hidden_metrics_are_whole_columns_of_a_share_of_windows():
    from models.anomaly.datamodule import HIDDEN_SHARE, hide_metrics

    values = np.ones((2000, 12, 5), np.float32)
    hide_metrics(values, 0.3, np.random.default_rng(1))
    hidden = np.isnan(values)
    assert (hidden.all(axis=1) == hidden.any(axis=1)).all()  # a metric goes for the window
    columns = hidden.all(axis=1)
    touched = columns.any(axis=1)
    assert 0.2 < touched.mean() < 0.3  # 0.3 chosen, minus those that drew no metric
    assert (~columns).any(axis=1).all()  # every window keeps a metric
    assert abs(columns[touched].mean() - HIDDEN_SHARE) < 0.1
    untouched = np.ones((4, 12, 5), np.float32)
    hide_metrics(untouched, 0.0, np.random.default_rng(1))
    assert not np.isnan(untouched).any()
