"""Write lab runs in the simulator export's layout (``ingest.simulator.load_dataset`` reads it).

Each run occupies ``n_steps`` consecutive slots of the time axis; its victim and co-runner are
two instances placed on the one node (this host) for those slots. The files that have no
lab counterpart (logs, cases, mitigation events) are written empty with their headers, so
loaders do not need a special case.
"""

from __future__ import annotations

import json
import platform
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.simulator import HOST_METRIC_NAMES, HOST_METRICS, VM_METRIC_NAMES, VM_METRICS
from ingest.simulator.logs import LogEvents
from models.interference.lab_probe import capacity_sources

README = """# Interference lab dataset

Written by `manage.py interference_lab` (models/interference/lab.py): real co-location runs
on one host, in the layout of the simulator's export (see ingest/simulator/dataset_layout.md).
Each run is a victim benchmark alone or next to one co-runner at one intensity; instances
are process trees; `labels/interference_p.npz` holds the measured P of each victim run
(bogo-ops per second co-located / alone, clipped to [0, 1]); `lab_runs.csv` has one row per
run with the raw rates. Logs, cases and mitigation files are empty.
"""


def write_dataset(
    out: Path, results: list[dict], capacity: dict, *, step: float, n_steps: int, workers: int
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    alone: dict[str, list[float]] = {}
    for r in results:
        if r["run"].corunner is None and np.isfinite(r["rate"]):
            alone.setdefault(r["run"].victim, []).append(r["rate"])
    t0 = int(time.time())
    n_slots = len(results) * n_steps
    ts = t0 + np.arange(n_slots) * step
    ts = ts.astype(np.int64) if float(step).is_integer() else ts
    instances: list[dict] = []
    columns: list[tuple[np.ndarray, int, float]] = []  # values, first slot, p
    runs_rows = []
    host = np.full((n_slots, 1, len(HOST_METRIC_NAMES)), np.nan, dtype=np.float32)
    for k, r in enumerate(results):
        run, s0 = r["run"], k * n_steps
        base = float(np.mean(alone[run.victim])) if alone.get(run.victim) else float("nan")
        p_raw = r["rate"] / base if base > 0 else float("nan")
        p = float(np.clip(p_raw, 0.0, 1.0)) if np.isfinite(p_raw) else float("nan")
        host[s0 : s0 + n_steps, 0] = r["host"]
        instances.append(_instance(len(instances), f"{run.victim}-r{run.index:03d}",
                                   f"victim:{run.victim}", 1, s0, n_steps))  # fmt: skip
        columns.append((r["victim"], s0, p))
        if run.corunner is not None:
            name = f"{run.corunner}{round(100 * run.intensity)}-r{run.index:03d}"
            instances.append(_instance(len(instances), name, f"corunner:{run.corunner}",
                                       workers, s0, n_steps))  # fmt: skip
            columns.append((r["co"], s0, float("nan")))
        runs_rows.append(
            {
                "run": run.index,
                "victim": run.victim,
                "corunner": run.corunner or "",
                "intensity": run.intensity,
                "start": int(ts[s0]) if len(ts) else t0,
                "victim_ops_per_s": r["rate"],
                "alone_ops_per_s": base,
                "p_raw": p_raw,
                "p": p,
                "load1_before": r["load1"],
            }
        )
    n_inst = len(instances)
    vm = np.full((n_slots, n_inst, len(VM_METRIC_NAMES)), np.nan, dtype=np.float32)
    p_arr = np.full((n_slots, n_inst), np.nan, dtype=np.float32)
    for i, (values, s0, p) in enumerate(columns):
        vm[s0 : s0 + n_steps, i] = values
        has = ~np.all(np.isnan(values), axis=1)
        p_arr[s0 : s0 + n_steps, i] = np.where(has, p, np.nan)
    names = [i["vm"] for i in instances]
    np.savez(out / "metrics_instances.npz", values=vm, ts=ts,
             metric_names=np.array(VM_METRIC_NAMES), instance_names=np.array(names))  # fmt: skip
    hostname = socket.gethostname()
    np.savez(out / "metrics_nodes.npz", values=host, ts=ts,
             metric_names=np.array(HOST_METRIC_NAMES), node_names=np.array([hostname]))  # fmt: skip
    _empty_side_files(out, n_slots, n_inst)
    np.savez(out / "labels" / "interference_p.npz", p=p_arr, ts=ts)
    end_of = {i["index"]: i["depart_step"] for i in instances}
    pd.DataFrame(
        {
            "instance": [i["index"] for i in instances],
            "vm": names,
            "node_index": 0,
            "node": hostname,
            "start": [_ts(ts, step, i["arrive_step"]) for i in instances],
            "end": [_ts(ts, step, end_of[i["index"]]) for i in instances],
        }
    ).to_csv(out / "placements.csv", index=False, lineterminator="\n")
    pd.DataFrame(runs_rows).to_csv(out / "lab_runs.csv", index=False, lineterminator="\n")
    host_info = {
        "hostname": hostname,
        "platform": platform.platform(),
        "cpu_count": capacity["cores"],
        "capacity_sources": capacity_sources(),
    }
    meta = {
        "config": {
            "source": "interference_lab",
            "step_seconds": step,
            "run_steps": n_steps,
            "workers": workers,
            "host": host_info,
        },
        "start": t0,
        "step_seconds": step,
        "n_steps": n_slots,
        "vm_metrics": [m.as_dict() for m in VM_METRICS],
        "host_metrics": [m.as_dict() for m in HOST_METRICS],
        "vm_labels": ["vm", "node", "workload"],
        "host_labels": ["node"],
        "scenario_bits": [],
        "fleet": {
            "clusters": [{"name": "lab", "tz_hours": 0.0}],
            "racks": [{"name": "lab", "cluster": "lab", "ambient_c": None}],
            "nodes": [
                {
                    "node": hostname,
                    "cluster": "lab",
                    "rack": "lab",
                    "index": 0,
                    "generation": "lab",
                    "age_days": None,
                    "capacity": capacity,
                }
            ],
            "instances": instances,
            "generations": [],
        },
    }
    (out / "fleet.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    (out / "README.md").write_text(README)
    ps = [r["p"] for r in runs_rows if np.isfinite(r["p"])]
    return {
        "path": str(out),
        "runs": len(results),
        "instances": n_inst,
        "steps": n_slots,
        "p_min": float(min(ps)) if ps else float("nan"),
        "p_max": float(max(ps)) if ps else float("nan"),
    }


def _ts(ts: np.ndarray, step: float, slot: int) -> float | int:
    value = ts[0] + slot * step if len(ts) else 0
    return int(value) if float(step).is_integer() else float(value)


def _instance(index: int, name: str, workload: str, vcpus: int, s0: int, n: int) -> dict:
    return {"index": index, "vm": name, "workload": workload, "service": workload,
            "vcpus": vcpus, "mem_gb": None, "arrive_step": s0, "depart_step": s0 + n}  # fmt: skip


def _empty_side_files(out: Path, n_slots: int, n_inst: int) -> None:
    (out / "labels").mkdir(exist_ok=True)
    (out / "mitigation").mkdir(exist_ok=True)
    logs = LogEvents.empty().as_arrays()
    np.savez(out / "labels" / "log_cases.npz", case=logs.pop("case"))
    np.savez(out / "logs.npz", **logs)
    (out / "log_templates.json").write_text("[]\n")
    np.savez(
        out / "labels" / "scenario_mask.npz",
        vm=np.zeros((n_slots, n_inst), dtype=np.uint64),
        host=np.zeros((n_slots, 1), dtype=np.uint64),
        scenario_names=np.array([], dtype="<U1"),
        scenario_kinds=np.array([], dtype="<U1"),
    )
    (out / "labels" / "cases.csv").write_text(
        "case_id,kind,scenario,level,node,instance,vm,start,end,intensity,variant,split,context,group\n"
    )
    (out / "mitigation" / "events.csv").write_text("event_id,ts,node,case_id\n")
    (out / "mitigation" / "counterfactuals.csv").write_text("event_id\n")
