"""Robust z's calibration tail on ASD, fitted by the calibrator before `caeff6a` (raw units)
and by the current one (units of the mean exceedance). Prints JSON, one entry per entity.

    PYTHONPATH=. .venv/bin/python benchmarks/experiments/anomaly_tail_fit.py
"""

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

from models.anomaly import evalsets
from models.anomaly import postprocess as current
from models.anomaly.baselines import RobustZ
from models.anomaly.datasets import asd
from models.anomaly.features import fit_spec


def _old_postprocess():
    src = subprocess.check_output(["git", "show", "caeff6a~1:models/anomaly/postprocess.py"])
    path = Path(tempfile.mkdtemp()) / "old_postprocess.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("old_postprocess", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_postprocess"] = mod
    spec.loader.exec_module(mod)
    return mod


def _level_50(cal) -> float:
    lo, hi = cal.tail_u, cal.tail_u * 1e6 + 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cal.transform(np.array([mid]))[0] < 50 else (lo, mid)
    return hi


def main() -> None:
    old = _old_postprocess()
    args = type("Args", (), {"window_steps": None, "patch_steps": None, "model_seed": 0})()
    mc = evalsets._model_config(evalsets._profile(asd.PROFILE, args), False)
    out = {}
    for sp in asd.load(None, False):
        g0 = sp.train[0]
        values = np.concatenate([g.values for g in sp.train])
        spec = fit_spec(values, g0.metric_names, target_names=list(g0.target_names))
        rz = RobustZ(mc.window_steps, mc.patch_steps).fit(sp.train, [spec] * len(sp.train))
        val, _ = evalsets._score_split(rz, sp, spec, mc)
        raw = np.concatenate([v.raw for v in val])
        row = {"percentiles_50_95_99_max": np.percentile(raw, [50, 95, 99, 100]).round(1).tolist()}
        for name, mod in (("raw_units", old), ("mean_exceedance_units", current)):
            cal = mod.Calibrator.fit(raw)
            exc = raw[raw > cal.tail_u] - cal.tail_u
            logpdf = stats.genpareto.logpdf(exc, cal.tail_shape, 0, cal.tail_scale)
            row[name] = {
                "shape": round(cal.tail_shape, 3),
                "scale": round(cal.tail_scale, 3),
                "exceedances": len(exc),
                "outside_support": int(np.isinf(logpdf).sum()),
                "raw_at_calibrated_50": round(_level_50(cal), 1),
            }
        out[sp.name] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
