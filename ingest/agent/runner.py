"""The agent's parts wired together: the run loop, ``--once`` and signal handling."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import BinaryIO

from ingest.agent.collector import Collector
from ingest.agent.config import AgentConfig
from ingest.agent.sender import Opener, Sender
from ingest.agent.spool import KINDS, Spool
from ingest.agent.tailer import LogTailer, jsonl_chunks
from ingest.remote_write import encode_remote_write

log = logging.getLogger(__name__)


def _lock_state_dir(state_dir: Path) -> BinaryIO:
    """One agent per state dir: two would send and delete the same chunks."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(state_dir / "agent.lock", "a+b")  # noqa: SIM115 - held while running
    try:
        import fcntl

        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass  # no advisory locks on this platform
    except OSError:
        lock.close()
        raise RuntimeError(f"another agent is using the state dir {state_dir}") from None
    return lock


class Agent:
    """The parts wired together; ``run_agent`` and ``run_once`` drive it."""

    def __init__(
        self, config: AgentConfig, stop_event: threading.Event, opener: Opener | None = None
    ):
        self.config, self.stop = config, stop_event
        state_dir = Path(config.state_dir)
        self.lock = _lock_state_dir(state_dir)
        self.spool = Spool(state_dir / "spool", config.max_buffer_bytes)
        self.collector = Collector(config.node, config.labels, config.top_processes)
        self.tailer = LogTailer(config.log_files, state_dir / "tail-state.json", node=config.node)
        self.senders = {k: Sender(self.spool, k, config, stop_event, opener=opener) for k in KINDS}

    def collect_metrics(self) -> None:
        stats = self.spool.stats()
        own = {
            "telltale_agent_buffer_bytes": stats.buffer_bytes,
            "telltale_agent_dropped_chunks_total": stats.dropped_chunks,
            "telltale_agent_dropped_bytes_total": stats.dropped_bytes,
            "telltale_agent_rejected_chunks_total": stats.rejected_chunks,
            "telltale_agent_send_failures_total": stats.send_failures,
        }
        try:
            series = self.collector.collect(own)
        except Exception:  # one failing psutil call must not stop logs and delivery
            log.exception("metrics collection failed")
            return
        if series:
            self.spool.append("metrics", encode_remote_write(series))

    def flush_logs(self) -> None:
        records = self.tailer.poll()
        for body in jsonl_chunks(records):
            self.spool.append("logs", body)
        self.tailer.commit()

    def close(self) -> None:
        self.tailer.close()
        self.lock.close()


def run_agent(
    config: AgentConfig, stop_event: threading.Event, *, opener: Opener | None = None
) -> None:
    """Collect, spool and send until ``stop_event`` is set; then spool what was read."""
    agent = Agent(config, stop_event, opener)
    threads = [
        threading.Thread(target=s.run, name=f"telltale-agent-{k}", daemon=True)
        for k, s in agent.senders.items()
    ]
    for thread in threads:
        thread.start()
    log.info("agent for node %s sending to %s", config.node, config.server)
    try:
        next_metrics = next_logs = time.monotonic()
        while not stop_event.is_set():
            now = time.monotonic()
            try:
                if now >= next_metrics:
                    # Skip missed ticks after a pause (suspend) instead of collecting in a burst.
                    next_metrics = max(next_metrics + config.interval, now)
                    agent.collect_metrics()
                if now >= next_logs:
                    next_logs = now + config.log_poll_interval
                    agent.flush_logs()
            except OSError:  # a full or read-only disk; the next tick tries again
                log.exception("cannot write to the spool in %s", config.state_dir)
            stop_event.wait(max(0.0, min(next_metrics, next_logs) - time.monotonic()))
        agent.flush_logs()
    finally:
        stop_event.set()
        agent.spool.wake()
        for thread in threads:
            thread.join(timeout=config.http_timeout + 1)
        agent.close()
    log.info("agent stopped; %d bytes left in the spool", agent.spool.stats().buffer_bytes)


def run_once(
    config: AgentConfig,
    *,
    opener: Opener | None = None,
    max_attempts: int = 2,
    prime_seconds: float = 1.0,
) -> bool:
    """One metrics batch and one log read, then deliver the whole spool; True if all went."""
    stop = threading.Event()
    agent = Agent(config, stop, opener)
    try:
        # Rates need two readings; the first one only primes the counters.
        agent.collector.collect()
        time.sleep(prime_seconds)
        agent.collect_metrics()
        agent.flush_logs()
        results = [agent.senders[kind].drain(max_attempts) for kind in KINDS]
        return all(results) and not any(agent.spool.pending(kind) for kind in KINDS)
    finally:
        agent.close()


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM/SIGINT end the run loop, which then spools what it had read."""

    def handle(signum: int, frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
