"""Validation of the simulator's ground-truth payload (``POST /api/v1/simulator/truth``).

Pure: JSON bytes in, a cleaned dict out, or ``DecodeError`` naming the first bad field.
"""

from __future__ import annotations

import json

from ingest.types import DecodeError

MAX_ITEMS = 100_000
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
    return value


def _int(value, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{field} must be an integer", field)
    if value < minimum:
        raise DecodeError(f"{field} must be at least {minimum}", field)
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
    if not isinstance(doc, dict):
        raise DecodeError("body must be a JSON object")
    run = _text(doc.get("run"), "run", 64)
    nodes = []
    for i, n in enumerate(_list(doc, "nodes")):
        f = f"nodes[{i}]"
        node = {"name": _text(n.get("name"), f"{f}.name", 200)}
        for key in ("cluster", "rack", "hardware"):
            node[key] = _text(n.get(key), f"{f}.{key}", 100, required=False)
        for key in ("cpu_cores", "memory_bytes"):
            if n.get(key) is not None:
                node[key] = _int(n[key], f"{f}.{key}", 1)
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
        start = _int(c.get("start"), f"{f}.start")
        end = _int(c.get("end"), f"{f}.end")
        if end <= start:
            raise DecodeError(f"{f}.end must be after {f}.start", f"{f}.end")
        node = _text(c.get("node"), f"{f}.node", 200, required=False)
        instance = _text(c.get("instance"), f"{f}.instance", 200, required=False)
        if not node and not instance:
            raise DecodeError(f"{f} needs a node or an instance", f"{f}.node")
        intensity = c.get("intensity", 0.0)
        if isinstance(intensity, bool) or not isinstance(intensity, int | float):
            raise DecodeError(f"{f}.intensity must be a number", f"{f}.intensity")
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
