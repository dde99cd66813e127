"""Write a simulated dataset to files, and read it back.

Telemetry, labels and counterfactuals live in separate files so that training code that
loads the default set never sees the counterfactual outcomes. Every file is written
deterministically (fixed zip timestamps, no gzip mtime, sorted JSON), so the same config
gives byte-identical exports.
"""

from __future__ import annotations

import gzip
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.simulator.catalogue import CATALOGUE
from ingest.simulator.config import SimConfig
from ingest.simulator.health import generate_unhealthy_events
from ingest.simulator.logs import TEMPLATES, LogEvents
from ingest.simulator.metrics import HOST_METRIC_NAMES, VM_METRIC_NAMES
from ingest.simulator.simulator import Simulator

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# The layout description written next to every export (also in docs/simulator.md).
LAYOUT = (Path(__file__).with_name("dataset_layout.md")).read_text()


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: object) -> object:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj))


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


@dataclass
class ExportSummary:
    path: str
    seconds: float
    steps: int
    instances: int
    nodes: int
    values: int
    log_events: int
    cases: int
    unhealthy_events: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def export_dataset(
    config: SimConfig,
    out_dir: str | Path,
    *,
    log_text: bool = False,
    mitigation_history: int = 0,
    simulator: Simulator | None = None,
) -> ExportSummary:
    """Simulate the whole period of ``config`` and write it under ``out_dir``."""
    began = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulator or Simulator(config)
    fleet = sim.fleet
    n_steps, n_inst, n_nodes = sim.n_steps, fleet.n_instances, fleet.n_nodes
    vm = np.full((n_steps, n_inst, len(VM_METRIC_NAMES)), np.nan, dtype=np.float32)
    host = np.empty((n_steps, n_nodes, len(HOST_METRIC_NAMES)), dtype=np.float32)
    p = np.full((n_steps, n_inst), np.nan, dtype=np.float32)
    vm_mask = np.zeros((n_steps, n_inst), dtype=np.uint64)
    host_mask = np.zeros((n_steps, n_nodes), dtype=np.uint64)
    logs: list[LogEvents] = []
    text = gzip.GzipFile(out / "logs.txt.gz", "wb", mtime=0) if log_text else None
    try:
        for chunk in sim.chunks():
            rows = slice(chunk.step0, chunk.step0 + chunk.n_steps)
            vm[rows, chunk.instance_idx] = chunk.vm
            p[rows, chunk.instance_idx] = chunk.p
            vm_mask[rows, chunk.instance_idx] = chunk.vm_mask
            host[rows] = chunk.host
            host_mask[rows] = chunk.host_mask
            logs.append(chunk.logs)
            if text is not None:
                lines = (sim.render_line(chunk.logs, i) for i in range(len(chunk.logs)))
                text.write(("\n".join(lines) + "\n").encode() if len(chunk.logs) else b"")
    finally:
        if text is not None:
            text.close()
    events = LogEvents.concat(logs)
    ts = sim.timestamps
    _write_npz(
        out / "metrics_instances.npz",
        values=vm,
        ts=ts,
        metric_names=np.array(VM_METRIC_NAMES),
        instance_names=np.array(fleet.instance_names),
    )
    _write_npz(
        out / "metrics_nodes.npz",
        values=host,
        ts=ts,
        metric_names=np.array(HOST_METRIC_NAMES),
        node_names=np.array(fleet.node_names),
    )
    arrays = events.as_arrays()
    _write_npz(out / "labels" / "log_cases.npz", case=arrays.pop("case"))
    _write_npz(out / "logs.npz", **arrays)
    _write_json(out / "log_templates.json", [t.as_dict() for t in TEMPLATES])
    _write_json(out / "fleet.json", {**sim.metadata(), "fleet": fleet.as_dict()})
    _write_csv(out / "placements.csv", sim.placements.frame(fleet, config))
    _write_csv(out / "labels" / "cases.csv", sim.cases_frame())
    _write_npz(out / "labels" / "interference_p.npz", p=p, ts=ts)
    _write_npz(
        out / "labels" / "scenario_mask.npz",
        vm=vm_mask,
        host=host_mask,
        scenario_names=np.array(CATALOGUE.names()),
        scenario_kinds=np.array([s.kind for s in CATALOGUE]),
    )
    mitigation = sim.mitigation()
    _write_csv(out / "mitigation" / "events.csv", mitigation.events)
    _write_csv(out / "mitigation" / "counterfactuals.csv", mitigation.counterfactuals)
    if mitigation_history > 0:
        history = generate_unhealthy_events(mitigation_history, config.seed)
        _write_csv(out / "mitigation" / "history_events.csv", history.events)
        _write_csv(out / "mitigation" / "history_counterfactuals.csv", history.counterfactuals)
    (out / "README.md").write_text(LAYOUT)
    return ExportSummary(
        path=str(out),
        seconds=round(time.perf_counter() - began, 3),
        steps=n_steps,
        instances=n_inst,
        nodes=n_nodes,
        values=int(vm.size + host.size),
        log_events=len(events),
        cases=len(sim.cases),
        unhealthy_events=len(mitigation.events),
    )


@dataclass
class Dataset:
    meta: dict
    ts: np.ndarray
    vm: np.ndarray
    vm_metric_names: list[str]
    instance_names: list[str]
    host: np.ndarray
    host_metric_names: list[str]
    node_names: list[str]
    logs: LogEvents
    templates: list[dict]
    placements: pd.DataFrame
    cases: pd.DataFrame
    p: np.ndarray
    vm_mask: np.ndarray
    host_mask: np.ndarray
    scenario_names: list[str]
    mitigation_events: pd.DataFrame
    counterfactuals: pd.DataFrame | None = None
    history_events: pd.DataFrame | None = None
    history_counterfactuals: pd.DataFrame | None = None


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_dataset(directory: str | Path, include_counterfactuals: bool = False) -> Dataset:
    """Read an export. Counterfactual outcomes stay on disk unless explicitly asked for."""
    d = Path(directory)
    inst, nodes = _npz(d / "metrics_instances.npz"), _npz(d / "metrics_nodes.npz")
    logs = _npz(d / "logs.npz")
    logs["case"] = _npz(d / "labels" / "log_cases.npz")["case"]
    masks = _npz(d / "labels" / "scenario_mask.npz")
    mit = d / "mitigation"
    history = mit / "history_events.csv"
    return Dataset(
        meta=json.loads((d / "fleet.json").read_text()),
        ts=inst["ts"],
        vm=inst["values"],
        vm_metric_names=inst["metric_names"].tolist(),
        instance_names=inst["instance_names"].tolist(),
        host=nodes["values"],
        host_metric_names=nodes["metric_names"].tolist(),
        node_names=nodes["node_names"].tolist(),
        logs=LogEvents.build(**logs),
        templates=json.loads((d / "log_templates.json").read_text()),
        placements=pd.read_csv(d / "placements.csv"),
        cases=pd.read_csv(d / "labels" / "cases.csv", keep_default_na=False),
        p=_npz(d / "labels" / "interference_p.npz")["p"],
        vm_mask=masks["vm"],
        host_mask=masks["host"],
        scenario_names=masks["scenario_names"].tolist(),
        mitigation_events=pd.read_csv(mit / "events.csv"),
        counterfactuals=pd.read_csv(mit / "counterfactuals.csv")
        if include_counterfactuals
        else None,
        history_events=pd.read_csv(history) if history.exists() else None,
        history_counterfactuals=(
            pd.read_csv(mit / "history_counterfactuals.csv")
            if include_counterfactuals and history.exists()
            else None
        ),
    )
