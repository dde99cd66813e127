"""Seeded fleet simulator with ground truth: telemetry a real fleet would emit, and the
truth behind it (interference ratio P, labeled anomaly and deceptive-normal cases,
unhealthy-node events with every action's counterfactual outcome).

Pure numpy/pandas/scipy; no Django. See docs/simulator.md for the generative assumptions.

    from ingest.simulator import SimConfig, Simulator
    sim = Simulator(SimConfig(seed=1, n_nodes=10, hours=6))
    for chunk in sim.chunks():          # one hour per chunk
        chunk.vm, chunk.host, chunk.logs, chunk.p, sim.cases
"""

from ingest.simulator.catalogue import ANOMALIES, CATALOGUE, DECEPTIVE
from ingest.simulator.config import ScenarioRates, SimConfig
from ingest.simulator.export import Dataset, ExportSummary, export_dataset, load_dataset
from ingest.simulator.fleet import GENERATIONS, Fleet, build_fleet
from ingest.simulator.health import (
    ACTIONS,
    COVARIATES,
    FAULTS,
    OUTCOMES,
    MitigationData,
    expected_outcomes,
    generate_unhealthy_events,
    legacy_policy,
    legacy_propensities,
    oracle,
)
from ingest.simulator.interference import (
    PlacedInstance,
    performance_ratio,
    predict_p_given_placement,
)
from ingest.simulator.logs import TEMPLATE_INDEX, TEMPLATES, LogEvents, LogTemplate
from ingest.simulator.metrics import (
    HOST_METRIC_NAMES,
    HOST_METRICS,
    VM_METRIC_NAMES,
    VM_METRICS,
    MetricSpec,
)
from ingest.simulator.scenarios import Case, ScenarioSpec
from ingest.simulator.simulator import Chunk, Simulator
from ingest.simulator.workloads import ARCHETYPES, Archetype

__all__ = [
    "ACTIONS",
    "ANOMALIES",
    "ARCHETYPES",
    "CATALOGUE",
    "COVARIATES",
    "DECEPTIVE",
    "FAULTS",
    "GENERATIONS",
    "HOST_METRICS",
    "HOST_METRIC_NAMES",
    "OUTCOMES",
    "TEMPLATES",
    "TEMPLATE_INDEX",
    "VM_METRICS",
    "VM_METRIC_NAMES",
    "Archetype",
    "Case",
    "Chunk",
    "Dataset",
    "ExportSummary",
    "Fleet",
    "LogEvents",
    "LogTemplate",
    "MetricSpec",
    "MitigationData",
    "PlacedInstance",
    "ScenarioRates",
    "ScenarioSpec",
    "SimConfig",
    "Simulator",
    "build_fleet",
    "expected_outcomes",
    "export_dataset",
    "generate_unhealthy_events",
    "legacy_policy",
    "legacy_propensities",
    "load_dataset",
    "oracle",
    "performance_ratio",
    "predict_p_given_placement",
]
