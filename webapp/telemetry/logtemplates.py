"""Log template mining with drain3, one miner per process.

Template ids are hashes of the template text. Each process seeds its miner with the
stored templates (most frequent first), so a restarted process or a second web worker
forms the same clusters and maps lines to the same ids.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from webapp.telemetry.identity import template_id

log = logging.getLogger(__name__)

SEED_LIMIT = 5000
MAX_MESSAGE_CHARS = 2000  # templates of longer lines are mined from their start

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


@dataclass(frozen=True, slots=True)
class MinedLine:
    template_id: int
    template: str
    params: list[str]


def _config() -> TemplateMinerConfig:
    config = TemplateMinerConfig()
    config.drain_sim_th = 0.4
    config.drain_depth = 4
    config.drain_max_children = 100
    config.masking_instructions = [MaskingInstruction(p, name) for p, name in MASKS]
    config.parametrize_numeric_tokens = True
    return config


class LogTemplateMiner:
    def __init__(self):
        self._miner = TemplateMiner(config=_config())
        self._lock = threading.Lock()
        self._seeded = False

    def seed(self, templates: list[str]) -> None:
        with self._lock:
            for text in templates:
                self._miner.add_log_message(text)
            self._seeded = True

    @property
    def seeded(self) -> bool:
        return self._seeded

    def mine(self, messages: list[str]) -> list[MinedLine]:
        out = []
        with self._lock:
            for message in messages:
                text = message[:MAX_MESSAGE_CHARS].strip() or "<empty>"
                result = self._miner.add_log_message(text)
                template = result["template_mined"]
                out.append(MinedLine(template_id(template), template, _params(template, text)))
        return out


def _params(template: str, message: str) -> list[str]:
    """Message tokens where the template has a wildcard or a mask."""
    t_tokens = template.split()
    m_tokens = message.split()
    if len(t_tokens) != len(m_tokens):
        return []
    return [m for t, m in zip(t_tokens, m_tokens, strict=True) if t != m]


_miner: LogTemplateMiner | None = None
_miner_lock = threading.Lock()


def get_miner() -> LogTemplateMiner:
    global _miner
    with _miner_lock:
        if _miner is None:
            _miner = LogTemplateMiner()
        if not _miner.seeded:
            from webapp.telemetry.models import LogTemplate

            texts = list(
                LogTemplate.objects.order_by("-count").values_list("template", flat=True)[
                    :SEED_LIMIT
                ]
            )
            _miner.seed(texts)
            log.info("log template miner seeded with %d stored templates", len(texts))
        return _miner


def reset_miner() -> None:
    global _miner
    with _miner_lock:
        _miner = None
