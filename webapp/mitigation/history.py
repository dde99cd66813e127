"""Import of past unhealthy-node events with their action and outcome (CSV or JSON).

Rows are validated by the engine's schema (``models.mitigation.data.validate_history``);
each refused row is reported with its line and column, the valid ones become closed events
that the next mitigation model trains on.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from django.db import transaction
from django.utils import timezone

from models.mitigation.data import validate_history
from webapp.core.services import audit
from webapp.mitigation.models import ActionOutcome, MitigationAction, UnhealthyEvent
from webapp.mitigation.services import FAULT_CATEGORIES
from webapp.telemetry.writer import node_ids_for

SCHEMA = (
    ("node", "node name (created if Telltale has not seen it)"),
    ("ts", "when the event started, RFC 3339 (optional; default: the import time)"),
    ("event_id", "id in the source system, unique (optional; re-importing skips known ids)"),
    ("fault", f"fault category: {', '.join(FAULT_CATEGORIES)}"),
    ("severity", "0 to 1"),
    ("error_count", "error counter at the time, ≥ 0"),
    ("node_age_days", "≥ 0"),
    ("hw_generation", "hardware generation, ≥ 1"),
    ("instances_hosted", "instances on the node, ≥ 1"),
    ("cpu_utilization", "0 to 1"),
    ("memory_utilization", "0 to 1"),
    ("recent_repairs", "repairs in the previous 90 days, ≥ 0"),
    ("action", "the action taken (see the action catalogue)"),
    ("downtime_minutes", "instance downtime it cost, summed over instances, ≥ 0"),
    ("interruptions", "instances interrupted (optional)"),
    ("capacity_cost_node_hours", "capacity taken out of service (optional)"),
)
COVARIATES = (
    "severity",
    "error_count",
    "node_age_days",
    "hw_generation",
    "instances_hosted",
    "cpu_utilization",
    "memory_utilization",
    "recent_repairs",
)


MAX_ROWS = 100_000
SCALARS = (str, int, float, bool, type(None))


@dataclass
class ImportReport:
    imported: int = 0
    skipped_known: int = 0
    errors: list[dict] = field(default_factory=list)
    # Set when the file as a whole is refused (unreadable, wrong shape, too many rows).
    file_error: str | None = None


def _frame(name: str, data: bytes) -> tuple[pd.DataFrame | None, int, str | None]:
    """(frame, offset from row index to the line people see, error)."""
    if b"\x00" in data[:65536]:
        return None, 0, "unreadable file: it is binary, not CSV or JSON text"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, 0, f"unreadable file: not UTF-8 text ({exc.reason} at byte {exc.start})"
    try:
        if name.lower().endswith(".json"):
            rows = json.loads(data)
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                return None, 0, "the JSON must be a list of objects"
            if any(not isinstance(v, SCALARS) for r in rows for v in r.values()):
                return None, 0, "every JSON value must be a string, number, true/false or null"
            frame, offset = pd.DataFrame(rows), 1
        else:
            frame, offset = pd.read_csv(io.BytesIO(data)), 2
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        return None, 0, f"unreadable file: {str(exc).strip().splitlines()[0][:300]}"
    if len(frame) > MAX_ROWS:
        return None, 0, f"the file has {len(frame)} rows; import at most {MAX_ROWS} at a time"
    return frame, offset, None


def import_file(name: str, data: bytes, actor=None) -> ImportReport:
    report = ImportReport()
    frame, offset, error = _frame(name, data)
    if frame is None:
        report.file_error = error
        report.errors.append({"row": "–", "column": "", "message": error})
        return report
    if "node" not in frame.columns:
        report.file_error = "the required column node is missing"
        report.errors.append(
            {"row": "–", "column": "node", "message": "required column is missing"}
        )
        return report
    actions = {a.key: a for a in MitigationAction.objects.all()}
    clean, errors = validate_history(frame, tuple(actions))
    missing = [e.column for e in errors if e.row is None and e.column]
    if missing:
        report.file_error = f"required columns are missing: {', '.join(missing)}"
    for e in errors:
        report.errors.append(
            {
                "row": "–" if e.row is None else e.row + offset,
                "column": e.column or "",
                "message": e.message,
            }
        )
    with transaction.atomic():
        nodes = node_ids_for({str(n) for n in clean["node"].dropna()})
        for position, row in clean.iterrows():
            line = frame.index.get_loc(position) + offset
            if not isinstance(row.get("node"), str) or not row["node"].strip():
                report.errors.append({"row": line, "column": "node", "message": "node is empty"})
                continue
            start = _start(row.get("ts"))
            if start is None:
                report.errors.append(
                    {"row": line, "column": "ts", "message": f"not a time: {row.get('ts')!r}"}
                )
                continue
            external = (
                str(row["event_id"]) if "event_id" in row and pd.notna(row["event_id"]) else ""
            )
            if (
                external
                and UnhealthyEvent.objects.filter(source="import", external_id=external).exists()
            ):
                report.skipped_known += 1
                continue
            event = UnhealthyEvent.objects.create(
                node_id=nodes[row["node"]],
                start=start,
                end=start,
                fault_category=str(row["fault"]),
                signals={name: float(row[name]) for name in COVARIATES},
                source="import",
                external_id=external,
                status=UnhealthyEvent.CLOSED,
            )
            ActionOutcome.objects.create(
                event=event,
                action=actions[row["action"]],
                downtime_minutes=float(row["downtime_minutes"]),
                interruptions=_optional(row, "interruptions"),
                capacity_cost=_optional(row, "capacity_cost_node_hours"),
                applied_at=start,
                recorded_at=timezone.now(),
                reason="imported history",
            )
            report.imported += 1
        audit(
            actor,
            "mitigation.history_imported",
            name,
            imported=report.imported,
            errors=len(report.errors),
        )
    return report


def _start(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return timezone.now()
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional(row, name: str) -> float | None:
    value = row.get(name)
    return None if value is None or pd.isna(value) else float(value)
