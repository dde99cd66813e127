"""Log lines → drain3 templates → hashed vocabulary buckets.

The app mines raw lines with drain3 at ingest (``webapp/telemetry/logtemplates.py``); the
model must see the same kind of template, never the simulator's internal template index,
so the masking list and the drain3 settings below are a copy of the app's (``models/``
imports no Django). Template ids are the app's hash of the template text.

A template reaches the network as a few buckets of one fixed-size embedding table: one
for the hashed template id and one per word of the template text. New templates therefore
never break the model (they hash into the same table), and a template never seen in
training still shares its words ("error", "failed", "timeout") with known ones.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# Same masks, in the same order, as webapp/telemetry/logtemplates.py.
MASKS = (
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "IP"),
    (r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b", "MAC"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"\b[0-9a-fA-F]{16,}\b", "HEX"),
    (
        r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:ms|s|us|µs|ns|%|[KMGT]i?B)?(?![\w.])",
        "NUM",
    ),
)
MAX_MESSAGE_CHARS = 2000
MAX_WORDS = 24
_MASK = (1 << 63) - 1
_WORD = re.compile(r"[A-Za-z][A-Za-z_]+")
_PLACEHOLDERS = {"uuid", "ip", "mac", "hex", "num"}


def miner_config() -> TemplateMinerConfig:
    config = TemplateMinerConfig()
    config.drain_sim_th = 0.4
    config.drain_depth = 4
    config.drain_max_children = 100
    config.masking_instructions = [MaskingInstruction(p, name) for p, name in MASKS]
    config.parametrize_numeric_tokens = True
    return config


def template_id(template: str) -> int:
    """The app's id of a template (``webapp.telemetry.identity.template_id``)."""
    data = b"tpl\xff" + template.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") & _MASK


def _bucket(salt: bytes, text: str, vocab_size: int) -> int:
    digest = hashlib.blake2b(salt + text.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % vocab_size


def template_buckets(template: str, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-table rows of one template and their weights (id 1.0, words share 1.0)."""
    rows = [template_id(template) % vocab_size]
    weights = [1.0]
    words = [w.lower() for w in _WORD.findall(template) if w.lower() not in _PLACEHOLDERS]
    words = list(dict.fromkeys(words))[:MAX_WORDS]
    for word in words:
        rows.append(_bucket(b"w\xff", word, vocab_size))
        weights.append(1.0 / len(words))
    return np.asarray(rows, dtype=np.int64), np.asarray(weights, dtype=np.float32)


class LogMiner:
    """drain3 with the app's configuration; remembers every cluster it formed.

    ``mine`` returns cluster ids; ``template(cluster_id)`` gives the cluster's template
    *now*, so callers that mine a whole training set first and read templates afterwards
    get one consistent template per line (drain3 generalises templates as it goes).
    """

    def __init__(self, seed_templates: list[str] | None = None):
        self._miner = TemplateMiner(config=miner_config())
        for text in seed_templates or ():
            self._miner.add_log_message(text)

    def mine(self, messages: list[str]) -> np.ndarray:
        out = np.empty(len(messages), dtype=np.int64)
        add = self._miner.drain.add_log_message
        mask = self._miner.masker.mask
        for i, message in enumerate(messages):
            text = message[:MAX_MESSAGE_CHARS].strip() or "<empty>"
            cluster, _ = add(mask(text))
            out[i] = cluster.cluster_id
        return out

    def lookup(self, message: str) -> str:
        """Template of one line or template text: exact match first, else mined as new."""
        text = message[:MAX_MESSAGE_CHARS].strip() or "<empty>"
        cluster = self._miner.match(text)
        if cluster is None:
            cluster, _ = self._miner.drain.add_log_message(self._miner.masker.mask(text))
        return cluster.get_template()

    def template(self, cluster_id: int) -> str:
        return self._miner.drain.id_to_cluster[int(cluster_id)].get_template()

    def templates_by_count(self) -> list[tuple[str, int]]:
        clusters = sorted(self._miner.drain.clusters, key=lambda c: -c.size)
        return [(c.get_template(), int(c.size)) for c in clusters]


@dataclass
class TemplateTable:
    """Templates seen so far, each with its bucket rows (CSR), indexed by position.

    Training builds one from mined lines; the detector grows it as new texts arrive.
    """

    vocab_size: int
    texts: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _rows: list[np.ndarray] = field(default_factory=list)
    _weights: list[np.ndarray] = field(default_factory=list)

    def add(self, text: str) -> int:
        idx = self._index.get(text)
        if idx is None:
            idx = len(self.texts)
            self._index[text] = idx
            self.texts.append(text)
            rows, weights = template_buckets(text, self.vocab_size)
            self._rows.append(rows)
            self._weights.append(weights)
        return idx

    def __len__(self) -> int:
        return len(self.texts)

    def gather(self, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """EmbeddingBag inputs for these template indices: rows, offsets, weights."""
        rows = [self._rows[int(t)] for t in templates]
        weights = [self._weights[int(t)] for t in templates]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        if not rows:
            return np.zeros(0, np.int64), offsets, np.zeros(0, np.float32)
        return np.concatenate(rows), offsets, np.concatenate(weights)


def mine_to_table(
    messages: list[str], table: TemplateTable, miner: LogMiner | None = None
) -> tuple[np.ndarray, LogMiner]:
    """Mine a training corpus in one pass; each line gets its cluster's final template."""
    miner = miner or LogMiner()
    clusters = miner.mine(messages)
    uniq, inverse = np.unique(clusters, return_inverse=True)
    positions = np.array([table.add(miner.template(c)) for c in uniq], dtype=np.int32)
    return positions[inverse], miner
