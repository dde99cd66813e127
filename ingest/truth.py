"""Validation of the simulator's ground-truth payload (``POST /api/v1/simulator/truth``).

Pure: JSON bytes in, a cleaned dict out, or ``DecodeError`` naming the first bad field.
"""

from __future__ import annotations

import json
import math

from ingest.types import DecodeError

MAX_ITEMS = 100_000
# Bounds of the columns and of datetime: larger numbers would fail in the database (a 5xx)
# instead of being refused here.
MAX_INT64 = 2**63 - 1
MAX_INT32 = 2**31 - 1
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
CASE_KINDS = ("anomaly", "deceptive")


def _text(value, field: str, limit: int, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise DecodeError(f"{field} is required", field)
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{field} must be a string", field)
    if len(value) > limit:
        raise DecodeError(f"{field} is longer than {limit} characters", field)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise DecodeError(f"{field} must not contain NUL characters", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone UTF-16 surrogate escape such as "\ud800"
        raise DecodeError(f"{field} is not valid Unicode", field) from None
    return value


def _int(value, field: str, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{field} must be an integer", field)
    if value < minimum:
        raise DecodeError(f"{field} must be at least {minimum}", field)
    if value > maximum:
        raise DecodeError(f"{field} must be at most {maximum}", field)
    return value


def _list(doc: dict, key: str) -> list:
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise DecodeError(f"{key} must be a list", key)
    if len(items) > MAX_ITEMS:
        raise DecodeError(f"{key} has more than {MAX_ITEMS} items", key)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DecodeError(f"{key}[{i}] must be an object", f"{key}[{i}]")
    return items


def decode_truth(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("body is not JSON this server accepts: nested too deeply") from None
    if not isinstance(doc, dict):
        raise DecodeError("body must be a JSON object")
    run = _text(doc.get("run"), "run", 64)
    nodes = []
    for i, n in enumerate(_list(doc, "nodes")):
        f = f"nodes[{i}]"
        node = {"name": _text(n.get("name"), f"{f}.name", 200)}
        for key in ("cluster", "rack", "hardware"):
            node[key] = _text(n.get(key), f"{f}.{key}", 100, required=False)
        for key, maximum in (("cpu_cores", MAX_INT32), ("memory_bytes", MAX_INT64)):
            if n.get(key) is not None:
                node[key] = _int(n[key], f"{f}.{key}", 1, maximum)
        nodes.append(node)
    instances = [
        {
            "name": _text(x.get("name"), f"instances[{i}].name", 200),
            "workload": _text(x.get("workload"), f"instances[{i}].workload", 100, required=False),
        }
        for i, x in enumerate(_list(doc, "instances"))
    ]
    cases = []
    for i, c in enumerate(_list(doc, "cases")):
        f = f"cases[{i}]"
        kind = _text(c.get("kind"), f"{f}.kind", 16)
        if kind not in CASE_KINDS:
            raise DecodeError(f"{f}.kind must be one of {', '.join(CASE_KINDS)}", f"{f}.kind")
        start = _int(c.get("start"), f"{f}.start", maximum=MAX_EPOCH_SECONDS)
        end = _int(c.get("end"), f"{f}.end", maximum=MAX_EPOCH_SECONDS)
        if end <= start:
            raise DecodeError(f"{f}.end must be after {f}.start", f"{f}.end")
        node = _text(c.get("node"), f"{f}.node", 200, required=False)
        instance = _text(c.get("instance"), f"{f}.instance", 200, required=False)
        if not node and not instance:
            raise DecodeError(f"{f} needs a node or an instance", f"{f}.node")
        intensity = c.get("intensity", 0.0)
        try:
            if isinstance(intensity, bool) or not isinstance(intensity, int | float):
                raise TypeError
            intensity = float(intensity)
            if not math.isfinite(intensity):
                raise OverflowError
        except (TypeError, OverflowError):
            raise DecodeError(f"{f}.intensity must be a finite number", f"{f}.intensity") from None
        cases.append(
            {
                "case_id": _int(c.get("case_id"), f"{f}.case_id"),
                "kind": kind,
                "scenario": _text(c.get("scenario"), f"{f}.scenario", 64),
                "level": _text(c.get("level"), f"{f}.level", 8, required=False),
                "node": node,
                "instance": instance,
                "start": start,
                "end": end,
                "intensity": float(intensity),
                "variant": _text(c.get("variant"), f"{f}.variant", 64, required=False),
                "split": _text(c.get("split"), f"{f}.split", 16, required=False),
                "context": _text(c.get("context"), f"{f}.context", 2000, required=False),
            }
        )
    return {"run": run, "nodes": nodes, "instances": instances, "cases": cases}
