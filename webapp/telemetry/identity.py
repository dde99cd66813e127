"""Stable ids derived from content, so every process agrees without asking the database."""

from __future__ import annotations

import hashlib

from ingest.types import Labels

_MASK = (1 << 63) - 1  # positive signed 64-bit: fits bigint on every database


def _hash63(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") & _MASK


def series_id(labels: Labels) -> int:
    """Labels are sorted (name, value) pairs including __name__."""
    return _hash63("\xff".join(f"{n}\xfe{v}" for n, v in labels).encode("utf-8", "surrogatepass"))


def template_id(template: str) -> int:
    return _hash63(b"tpl\xff" + template.encode("utf-8", "surrogatepass"))


def log_fingerprint(batch_digest: bytes, index: int) -> int:
    return _hash63(batch_digest + index.to_bytes(8, "big"))


# Label names that say which host or VM a series belongs to, most specific first.
NODE_LABELS = ("node", "nodename", "host", "hostname", "host_name")
INSTANCE_LABELS = ("vm", "vm_name", "instance_id")


def target_names(labels: dict[str, str]) -> tuple[str | None, str | None]:
    """(node name, VM name) a series belongs to, from its labels.

    Prometheus' own ``instance`` label is a scrape address (host:port), so it names the
    node only when nothing better is present, with the port cut off.
    """
    node = next((labels[k] for k in NODE_LABELS if labels.get(k)), None)
    if node is None and labels.get("instance"):
        address = labels["instance"]
        if address.startswith("["):  # [::1]:9100
            node = address[1:].split("]", 1)[0]
        else:
            node = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    vm = next((labels[k] for k in INSTANCE_LABELS if labels.get(k)), None)
    return node, vm
