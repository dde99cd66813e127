"""The 26 anomalous and 13 deceptive-normal scenarios (see ``scenarios`` for the vocabulary).

Deceptive normals share a metric signature with the anomaly named in ``mimics``; what tells
them apart is context: their log lines (backup job, deploy, change ticket, vacuum) and,
for scheduled ones, that they recur at the same local time.
"""

from __future__ import annotations

from ingest.simulator.catalogue_anomalies import ANOMALIES
from ingest.simulator.catalogue_deceptive import DECEPTIVE
from ingest.simulator.scenarios import Catalogue

CATALOGUE = Catalogue(ANOMALIES + DECEPTIVE)

__all__ = ["ANOMALIES", "CATALOGUE", "DECEPTIVE"]
