"""Log templates, rendering and rates: realistic enough for drain3 to have real work."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from ingest.simulator import ARCHETYPES, TEMPLATES
from ingest.simulator.logs import (
    CONTEXT_KINDS,
    PARAM_KINDS,
    LineContext,
    param_kind,
    render_line,
    render_message,
)

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ [\w./@-]+(\[\d+\])?: .+$")
CTX = LineContext("web-1", "eu-west-1a-r01-n01", "web-1", "storefront", 42, "2/5", ("a-1", "b-2"))


def test_hundreds_of_templates_in_every_family():
    assert len(TEMPLATES) >= 300
    families = Counter(t.family for t in TEMPLATES)
    for a in ARCHETYPES:
        assert families[a.name] >= 9, a.name
    assert families["node"] >= 30 and families["scenario"] >= 80
    assert len({t.key for t in TEMPLATES}) == len(TEMPLATES)
    severities = {t.severity for t in TEMPLATES}
    assert {9, 13, 17} <= severities


def test_every_template_renders_with_varied_parameters():
    for t in TEMPLATES:
        lines = {render_message(t.id, seed, 1736121600.5, 93.2, CTX) for seed in range(5)}
        assert all("{" + k + "}" not in line for line in lines for k in CONTEXT_KINDS)
        drawn = [k for k in re.findall(r"\{([a-z_0-9]+)\}", t.text) if param_kind(k) in PARAM_KINDS]
        if drawn:
            assert len(lines) > 1, t.key
        line = render_line(t.id, 3, 1736121600.5, 1.0, CTX)
        assert LINE.match(line), line


def test_rendering_is_deterministic():
    a = [render_line(t.id, 99, 1736121600.0, 5.0, CTX) for t in TEMPLATES]
    b = [render_line(t.id, 99, 1736121600.0, 5.0, CTX) for t in TEMPLATES]
    assert a == b


def test_background_rates_and_mix(busy_sim, busy_day):
    logs = busy_day.logs
    background = logs.case == -1
    hours = busy_sim.n_steps * busy_sim.config.step_seconds / 3600
    per_instance_hour = background.sum() / (busy_day.instance_idx.size * hours)
    assert 50 < per_instance_hour < 2000
    fams = np.array([t.family for t in TEMPLATES])
    assert not (fams[logs.template[background]] == "scenario").any()
    assert (fams[logs.template[~background]] == "scenario").all()
    assert np.all(np.diff(logs.ts_ms) >= 0)
    used = np.unique(logs.template[background])
    assert len(used) > 150


def test_degraded_instances_log_more_warnings(busy_day):
    """Stress templates (slow queries, timeouts) follow contention and latency."""
    logs = busy_day.logs
    stress = np.array([t.stress for t in TEMPLATES])[logs.template]
    vm = logs.instance >= 0
    step = ((logs.ts_ms // 1000 - busy_day.ts[0]) // 15).astype(int)
    col = np.searchsorted(busy_day.instance_idx, logs.instance)
    p = busy_day.p[step[vm], col[vm]]
    s = stress[vm]
    ok = ~np.isnan(p)
    low = p[ok] < np.percentile(p[ok], 20)
    assert s[ok][low].mean() > s[ok][~low].mean()


def test_drain3_mines_many_templates(busy_sim, busy_day):
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    logs = busy_day.logs
    idx = np.random.default_rng(0).choice(len(logs), 4000, replace=False)
    for i in sorted(idx):
        line = busy_sim.render_line(logs, int(i))
        miner.add_log_message(line.split(": ", 1)[1])
    assert len(miner.drain.clusters) > 100
