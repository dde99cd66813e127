"""The agent's command line, shared by ``python -m ingest.agent`` and ``manage.py agent``.

Arguments are checked before anything starts, so that a typo in a systemd unit or a crontab
fails at once with a message instead of producing a silently wrong agent.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ingest.agent.config import AgentConfig
from ingest.agent.runner import install_signal_handlers, run_agent, run_once
from ingest.agent.tailer import MAX_CHUNK_BYTES

DESCRIPTION = (
    "Collect host metrics and tail log files, spool them on disk and send them to a "
    "Telltale server (remote_write and JSON lines)."
)
TOKEN_ENV = "TELLTALE_AGENT_TOKEN"  # noqa: S105 - the variable's name, not a secret
LOG_LEVEL_ENV = "LOG_LEVEL"  # the same variable and choices as the web app's settings
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Set by the agent itself on some series; a user label of the same name would be overwritten.
RESERVED_LABELS = frozenset({"node", "mountpoint", "process", "pid"})
MAX_LABEL_VALUE = 4096  # the server's limit (ingest.limits)


class ConfigError(ValueError):
    """An argument the agent cannot run with; the message names the option."""


class Writer(Protocol):
    def write(self, msg: str) -> Any: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's options, on this parser (``manage.py agent`` passes Django's)."""
    parser.add_argument(
        "--server", required=True, help="Telltale base URL, e.g. https://telltale.example.com"
    )
    parser.add_argument("--token", help=f"ingest token (default: ${TOKEN_ENV})")
    parser.add_argument("--node", help="node name for every series and line (default: hostname)")
    parser.add_argument(
        "--interval", type=float, default=15.0, help="seconds between metric collections"
    )
    parser.add_argument(
        "--log-file",
        action="append",
        default=[],
        dest="log_files",
        metavar="PATH",
        help="a log file to follow like tail -F (repeatable)",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        dest="labels",
        metavar="K=V",
        help="a label added to every metric series (repeatable)",
    )
    parser.add_argument(
        "--state-dir",
        default="./var/agent",
        help="where the spool and the log offsets live (default: ./var/agent)",
    )
    parser.add_argument(
        "--max-buffer-bytes",
        type=int,
        default=256 << 20,
        help="disk budget of the spool; the oldest chunks are dropped beyond it",
    )
    parser.add_argument(
        "--top-processes", type=int, default=10, help="processes reported, by CPU use"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="collect once, deliver the whole spool, exit 0 if everything was delivered",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingest.agent", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """The checked configuration; ``ConfigError`` for a value the agent cannot run with."""
    environ = os.environ if environ is None else environ
    server = args.server.strip()
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--server must be an http(s) URL such as https://host:8000, not {server!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError("--server must not have a query string or fragment")

    token = args.token or environ.get(TOKEN_ENV, "")
    if not token:
        raise ConfigError(f"an ingest token is needed: --token or ${TOKEN_ENV}")
    if not token.isprintable() or any(c.isspace() for c in token) or not token.isascii():
        raise ConfigError("the token must be printable ASCII without spaces")

    node = (args.node or socket.gethostname()).strip()
    if not node or len(node) > MAX_LABEL_VALUE:
        raise ConfigError(f"--node must be 1 to {MAX_LABEL_VALUE} characters")

    interval = args.interval
    if not math.isfinite(interval) or not 0 < interval <= 3600:
        raise ConfigError(
            f"--interval must be more than 0 and at most 3600 seconds, not {interval}"
        )
    if args.max_buffer_bytes < MAX_CHUNK_BYTES:
        raise ConfigError(
            f"--max-buffer-bytes must be at least {MAX_CHUNK_BYTES} (one log chunk), "
            f"not {args.max_buffer_bytes}"
        )
    if args.top_processes < 0:
        raise ConfigError("--top-processes must be 0 or more")

    state_dir = Path(args.state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create --state-dir {state_dir}: {exc}") from None
    if not os.access(state_dir, os.W_OK):
        raise ConfigError(f"--state-dir {state_dir} is not writable")

    log_files = tuple(dict.fromkeys(args.log_files))  # the same file twice is one tail
    for path in log_files:
        if Path(path).is_dir():
            raise ConfigError(f"--log-file {path} is a directory")

    return AgentConfig(
        server=server.rstrip("/"),
        token=token,
        node=node,
        interval=interval,
        log_files=log_files,
        labels=parse_labels(args.labels),
        state_dir=state_dir,
        max_buffer_bytes=args.max_buffer_bytes,
        top_processes=args.top_processes,
    )


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not value:
            raise ConfigError(f"--label must look like name=value, not {item!r}")
        if not LABEL_NAME_RE.fullmatch(name) or name.startswith("__"):
            raise ConfigError(
                f"--label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
            )
        if name in RESERVED_LABELS:
            raise ConfigError(f"--label {name!r} is set by the agent itself; choose another name")
        if name in labels:
            raise ConfigError(f"--label {name!r} is given twice")
        if len(value) > MAX_LABEL_VALUE:
            raise ConfigError(f"--label {name!r} value is longer than {MAX_LABEL_VALUE} characters")
        labels[name] = value
    return labels


def execute(config: AgentConfig, *, once: bool, stdout: Writer, stderr: Writer) -> int:
    """Run as the command line asked; the exit status.

    ``--once``: 0 when the whole spool was delivered, else 1 (the rest stays spooled).
    Otherwise runs until SIGTERM/SIGINT. ``RuntimeError`` when another agent holds the
    state dir.
    """
    if once:
        if not run_once(config, prime_seconds=min(1.0, config.interval)):
            stderr.write("not everything was delivered; the rest stays in the spool\n")
            return 1
        stdout.write("everything in the spool was delivered\n")
        return 0
    stop = threading.Event()
    install_signal_handlers(stop)
    run_agent(config, stop)
    return 0


def log_level(environ: Mapping[str, str]) -> str:
    """``$LOG_LEVEL`` read as the web app's settings read it."""
    raw = environ.get(LOG_LEVEL_ENV, "INFO").strip()
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"{LOG_LEVEL_ENV}={raw!r} must be one of: {', '.join(LOG_LEVELS)}")
    return raw.upper()


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest.agent``: 0 on success, 1 when ``--once`` left data behind or the
    agent cannot start, 2 for bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        level = log_level(os.environ)
        config = config_from_args(args, os.environ)
    except ConfigError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format=LOG_FORMAT)
    try:
        return execute(config, once=args.once, stdout=sys.stdout, stderr=sys.stderr)
    except RuntimeError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
