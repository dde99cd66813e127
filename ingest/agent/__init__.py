"""Telltale host agent: host metrics and log files, spooled on disk, sent to a Telltale server.

Everything collected is first written to the spool as the exact request body that will be
sent (remote_write bytes for metrics, JSON lines for logs), so a retry after an ambiguous
failure sends identical bytes and the server's deduplication stores it once. Each kind is
delivered strictly in sequence order; a disk budget drops the oldest chunks first.

Runs without Django: only the standard library, psutil and ``ingest`` are imported, so a
host needs just this package and its pure dependencies: ``python -m ingest.agent --help``.

Modules: ``collector`` (psutil metrics), ``tailer`` (log files), ``spool`` (disk spool),
``sender`` (HTTP delivery), ``runner`` (the run loop), ``cli`` (arguments, ``main``).
"""

from ingest.agent.collector import Collector
from ingest.agent.config import AgentConfig
from ingest.agent.runner import Agent, install_signal_handlers, run_agent, run_once
from ingest.agent.sender import (
    AUTH,
    DELIVERED,
    ENDPOINTS,
    HEADERS,
    MAX_RETRY_AFTER,
    REJECTED,
    RETRY,
    USER_AGENT,
    Opener,
    Sender,
    default_opener,
)
from ingest.agent.spool import KINDS, Chunk, Spool, SpoolStats
from ingest.agent.tailer import (
    MAX_CHUNK_BYTES,
    MAX_LINE_BYTES,
    LogTailer,
    guess_severity,
    jsonl_chunks,
)

__all__ = [
    "AUTH",
    "DELIVERED",
    "ENDPOINTS",
    "HEADERS",
    "KINDS",
    "MAX_CHUNK_BYTES",
    "MAX_LINE_BYTES",
    "MAX_RETRY_AFTER",
    "REJECTED",
    "RETRY",
    "USER_AGENT",
    "Agent",
    "AgentConfig",
    "Chunk",
    "Collector",
    "LogTailer",
    "Opener",
    "Sender",
    "Spool",
    "SpoolStats",
    "default_opener",
    "guess_severity",
    "install_signal_handlers",
    "jsonl_chunks",
    "run_agent",
    "run_once",
]
