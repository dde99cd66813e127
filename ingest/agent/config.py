"""The agent's settings, as checked by ``ingest.agent.cli``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class AgentConfig:
    server: str
    token: str
    node: str
    interval: float = 15.0
    log_files: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    state_dir: Path = Path("var/agent")
    max_buffer_bytes: int = 256 << 20
    top_processes: int = 10
    log_poll_interval: float = 1.0
    http_timeout: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    auth_retry: float = 60.0
