"""Real co-location experiments on this host: measured P and the metrics the app ingests.

    python manage.py interference_lab --out var/lab --duration 360
    python -m models.interference.lab --out var/lab --duration 360      (the same, no Django)

For every victim benchmark (stress-ng stressors that report bogo-ops: ``matrix`` (prod),
``cache``, ``memcpy``, ``qsort``) the lab runs the victim alone, then next to each co-runner
(stress-ng ``cache`` thrashing, ``stream`` memory bandwidth, ``cpu``, ``hdd`` I/O) at each
intensity (the share of time the co-runner is allowed to run, enforced by SIGSTOP/SIGCONT
duty cycling), then alone again. P of a run = victim bogo-ops per wall second next to the
co-runner / the mean of its two alone runs, clipped to [0, 1].

While each run lasts, every ``--step`` seconds it samples per process tree (victim and
co-runner, each one "instance") the vm_* metrics the simulator emits, from /proc through
psutil, and the host_* metrics of the node. Metrics this host cannot attribute to a process
(network, TCP retransmits, request metrics) or cannot measure (IPC, LLC misses, memory
bandwidth need hardware perf counters, absent on most VMs) are NaN, as a real exporter
would leave them absent.

The output directory has the simulator export's layout (``ingest.simulator.load_dataset``
reads it) plus ``lab_runs.csv`` with one row per run. Node capacity (cores, memory, LLC,
memory bandwidth, NIC, disk) is read or probed once and stored in ``fleet.json``.

Bounded: runs are short, the whole plan must fit ``--duration`` and stops at 1.5 times it, and
the lab refuses to start on a host with fewer than 2 cores or when victim plus co-runner
workers exceed the cores. Every child process is stopped when the lab ends, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.interference.lab_probe import host_capacity, host_sample, tree_sample

VICTIMS: dict[str, list[str]] = {
    "matrix": ["--matrix", "1", "--matrix-method", "prod"],
    "cache": ["--cache", "1"],
    "memcpy": ["--memcpy", "1"],
    "qsort": ["--qsort", "1"],
}
CORUNNERS: dict[str, Callable[[int, str], list[str]]] = {
    "cache": lambda n, tmp: ["--cache", str(n)],
    "membw": lambda n, tmp: ["--stream", str(n)],
    "cpu": lambda n, tmp: ["--cpu", str(n)],
    "io": lambda n, tmp: ["--hdd", str(n), "--hdd-bytes", "32M", "--temp-path", tmp],
}
MIN_RUN_SECONDS = 3.0
RUN_OVERHEAD_SECONDS = 1.0  # co-runner warm-up and process start/stop per run


class LabError(RuntimeError):
    """The lab refuses to run as asked (the message says why)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="var/lab", help="output directory (dataset layout)")
    parser.add_argument("--duration", type=float, default=360.0, help="wall-clock budget, s")
    parser.add_argument("--run-seconds", type=float, default=None, help="default: from budget")
    parser.add_argument("--step", type=float, default=1.0, help="sampling interval, s")
    parser.add_argument("--victims", default=",".join(VICTIMS))
    parser.add_argument("--corunners", default=",".join(CORUNNERS))
    parser.add_argument("--intensities", default="0.33,0.66,1.0")
    parser.add_argument("--workers", type=int, default=1, help="co-runner worker processes")


@dataclass
class Run:
    index: int
    victim: str
    corunner: str | None
    intensity: float


def plan(victims: list[str], corunners: list[str], intensities: list[float]) -> list[Run]:
    """Per victim: alone, every co-runner and intensity, alone again (drift check)."""
    runs: list[Run] = []
    for v in victims:
        runs.append(Run(len(runs), v, None, 0.0))
        for c in corunners:
            for i in intensities:
                runs.append(Run(len(runs), v, c, i))
        runs.append(Run(len(runs), v, None, 0.0))
    return runs


def check_host(workers: int, cores: int | None = None) -> None:
    cores = cores if cores is not None else (os.cpu_count() or 1)
    if cores < 2:
        raise LabError(f"this host has {cores} core(s); the lab needs at least 2")
    if workers < 1:
        raise LabError("--workers must be at least 1")
    if 1 + workers > cores:
        raise LabError(
            f"asked for 1 victim + {workers} co-runner workers = {1 + workers} busy cores, "
            f"but this host has {cores}; lower --workers"
        )
    if shutil.which("stress-ng") is None:
        raise LabError("stress-ng is not installed (apt-get install stress-ng)")


def _split(text: str, known: dict | None = None, what: str = "") -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if known is not None:
        bad = [x for x in items if x not in known]
        if bad:
            raise LabError(f"unknown {what} {bad}; known: {sorted(known)}")
    return items


class _DutyCycle(threading.Thread):
    """Lets a process group run ``share`` of each 200 ms period (SIGSTOP/SIGCONT)."""

    PERIOD = 0.2

    def __init__(self, pgid: int, share: float):
        super().__init__(daemon=True)
        self.pgid, self.share = pgid, share
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            _signal(self.pgid, signal.SIGCONT)
            if self.stop.wait(self.PERIOD * self.share):
                break
            _signal(self.pgid, signal.SIGSTOP)
            self.stop.wait(self.PERIOD * (1 - self.share))
        _signal(self.pgid, signal.SIGCONT)


def _signal(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    _signal(proc.pid, signal.SIGCONT)
    _signal(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _signal(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _bogo_rate(yaml_path: Path) -> float:
    text = yaml_path.read_text() if yaml_path.exists() else ""
    ops = re.search(r"bogo-ops:\s*([0-9.]+)", text)
    wall = re.search(r"wall-clock-time:\s*([0-9.]+)", text)
    if not ops or not wall or float(wall.group(1)) <= 0:
        return float("nan")
    return float(ops.group(1)) / float(wall.group(1))


def _one_run(
    run: Run, seconds: float, step: float, workers: int, tmp: str, n_steps: int
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Execute one run → (victim ops/s, victim [S, M], co-runner [S, M], host [S, H])."""
    co = duty = None
    yaml_path = Path(tmp) / f"run{run.index}.yaml"
    victim = None
    try:
        if run.corunner is not None:
            args = CORUNNERS[run.corunner](workers, tmp)
            co = subprocess.Popen(
                ["stress-ng", *args, "-t", str(int(seconds + 10)), "--quiet"],
                cwd=tmp,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if run.intensity < 1.0:
                duty = _DutyCycle(co.pid, run.intensity)
                duty.start()
            time.sleep(0.5)  # let the co-runner allocate and reach steady state
        victim = subprocess.Popen(
            ["stress-ng", *VICTIMS[run.victim], "-t", f"{seconds:.0f}s", "--metrics-brief",
             "--yaml", str(yaml_path)],
            cwd=tmp,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        vm_v, vm_c, host = _sample(victim, co, step, n_steps, workers)
        try:
            victim.wait(timeout=seconds + 15)
        except subprocess.TimeoutExpired:
            _stop(victim)
        return _bogo_rate(yaml_path), vm_v, vm_c, host
    finally:
        if duty is not None:
            duty.stop.set()
            duty.join(timeout=2)
        _stop(co)
        _stop(victim)


def _sample(
    victim: subprocess.Popen, co: subprocess.Popen | None, step: float, n_steps: int, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ingest.simulator import HOST_METRIC_NAMES, VM_METRIC_NAMES

    M, H = len(VM_METRIC_NAMES), len(HOST_METRIC_NAMES)
    out_v = np.full((n_steps, M), np.nan)
    out_c = np.full((n_steps, M), np.nan)
    out_h = np.full((n_steps, H), np.nan)
    prev: dict = {}
    next_t = time.monotonic()
    host_sample(prev)  # first reading only sets the counters' baseline
    tree_sample(victim.pid, 1, prev, "v")
    if co is not None:
        tree_sample(co.pid, workers, prev, "c")
    for k in range(n_steps):
        next_t += step
        time.sleep(max(0.0, next_t - time.monotonic()))
        if victim.poll() is not None:
            break
        host = host_sample(prev)
        out_h[k] = host.array
        out_v[k] = tree_sample(victim.pid, 1, prev, "v", host)
        if co is not None and co.poll() is None:
            out_c[k] = tree_sample(co.pid, workers, prev, "c", host)
    return out_v, out_c, out_h


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Run the plan and write the dataset; returns a summary dict."""
    from models.interference.lab_writer import write_dataset

    victims = _split(args.victims, VICTIMS, "victims")
    corunners = _split(args.corunners, CORUNNERS, "co-runners")
    intensities = [float(x) for x in _split(args.intensities)]
    if not victims or not all(0 < i <= 1 for i in intensities):
        raise LabError("need at least one victim and intensities in (0, 1]")
    check_host(args.workers)
    runs = plan(victims, corunners, intensities)
    seconds = args.run_seconds or (args.duration / len(runs) - RUN_OVERHEAD_SECONDS)
    if seconds < MIN_RUN_SECONDS:
        need = len(runs) * (MIN_RUN_SECONDS + RUN_OVERHEAD_SECONDS)
        raise LabError(
            f"{len(runs)} runs do not fit {args.duration:.0f} s (each needs at least "
            f"{MIN_RUN_SECONDS:.0f} s + {RUN_OVERHEAD_SECONDS:.0f} s); use --duration {need:.0f} "
            "or fewer victims, co-runners or intensities"
        )
    seconds = float(int(seconds))  # stress-ng takes whole seconds
    if len(runs) * (seconds + RUN_OVERHEAD_SECONDS) > 1.5 * args.duration:
        raise LabError(f"--run-seconds {seconds:.0f} × {len(runs)} runs exceeds the budget")
    n_steps = max(1, int(seconds / args.step) - 1)
    cap = host_capacity()
    log(
        f"interference lab on {socket.gethostname()}: {len(runs)} runs of {seconds:.0f} s "
        f"({n_steps} samples each), {os.cpu_count()} cores, capacity {cap}"
    )
    began = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="telltale-lab-") as tmp:
        for r in runs:
            if time.monotonic() - began > 1.5 * args.duration:
                log(f"budget exhausted; stopping after {len(results)} runs")
                break
            load1 = os.getloadavg()[0]
            rate, vm_v, vm_c, host = _one_run(r, seconds, args.step, args.workers, tmp, n_steps)
            results.append({"run": r, "rate": rate, "victim": vm_v, "co": vm_c, "host": host,
                            "load1": load1})  # fmt: skip
            what = f"{r.corunner}@{r.intensity:.2f}" if r.corunner else "alone"
            log(f"  [{r.index + 1}/{len(runs)}] {r.victim:<7} {what:<11} {rate:12.1f} ops/s")
    summary = write_dataset(
        Path(args.out), results, cap, step=args.step, n_steps=n_steps, workers=args.workers
    )
    summary["seconds"] = round(time.monotonic() - began, 1)
    summary["load1_max"] = round(max((r["load1"] for r in results), default=0.0), 2)
    cores = os.cpu_count() or 1
    if summary["load1_max"] > cores:
        # Victim and co-runner already fill ``1 + workers`` cores; anything else running
        # shifts the alone and co-located rates alike, and P then measures that noise too.
        log(f"warning: the host was busy (1-minute load up to {summary['load1_max']:.1f} on "
            f"{cores} cores); P mixes interference with other work; compare the alone runs "
            "in lab_runs.csv")  # fmt: skip
    log(f"wrote {summary['runs']} runs to {args.out} (P from {summary['p_min']:.2f} to "
        f"{summary['p_max']:.2f}) in {summary['seconds']:.0f} s")  # fmt: skip
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    try:
        run(parser.parse_args())
    except LabError as exc:
        raise SystemExit(f"interference_lab: {exc}") from exc


if __name__ == "__main__":
    main()
