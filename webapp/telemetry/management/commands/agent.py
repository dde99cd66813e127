"""`manage.py agent`: run the Telltale host agent (``ingest.agent``) on this host.

Arguments are checked here, before anything starts, so that a typo in a systemd unit or
a crontab fails at once with a message instead of producing a silently wrong agent.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.management import BaseCommand, CommandError

from ingest.agent import (
    MAX_CHUNK_BYTES,
    AgentConfig,
    install_signal_handlers,
    run_agent,
    run_once,
)

TOKEN_ENV = "TELLTALE_AGENT_TOKEN"  # noqa: S105 - the variable's name, not a secret
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Set by the agent itself on some series; a user label of the same name would be overwritten.
RESERVED_LABELS = frozenset({"node", "mountpoint", "process", "pid"})
MAX_LABEL_VALUE = 4096  # the server's limit (ingest.limits)


class Command(BaseCommand):
    help = (
        "Collect host metrics and tail log files, spool them on disk and send them to a "
        "Telltale server (remote_write and JSON lines)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--server", required=True, help="Telltale base URL, e.g. https://telltale.example.com"
        )
        parser.add_argument("--token", help=f"ingest token (default: ${TOKEN_ENV})")
        parser.add_argument(
            "--node", help="node name for every series and line (default: hostname)"
        )
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

    def handle(self, *args, **options):
        config = build_config(options, os.environ)
        if options["once"]:
            try:
                delivered = run_once(config, prime_seconds=min(1.0, config.interval))
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
            if not delivered:
                self.stderr.write("not everything was delivered; the rest stays in the spool")
                sys.exit(1)
            self.stdout.write("everything in the spool was delivered")
            return
        stop = threading.Event()
        install_signal_handlers(stop)
        try:
            run_agent(config, stop)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None


def build_config(options: dict, environ: Mapping[str, str]) -> AgentConfig:
    server = options["server"].strip()
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(
            f"--server must be an http(s) URL such as https://host:8000, not {server!r}"
        )
    if parts.query or parts.fragment:
        raise CommandError("--server must not have a query string or fragment")

    token = options.get("token") or environ.get(TOKEN_ENV, "")
    if not token:
        raise CommandError(f"an ingest token is needed: --token or ${TOKEN_ENV}")
    if not token.isprintable() or any(c.isspace() for c in token) or not token.isascii():
        raise CommandError("the token must be printable ASCII without spaces")

    node = (options.get("node") or socket.gethostname()).strip()
    if not node or len(node) > MAX_LABEL_VALUE:
        raise CommandError(f"--node must be 1 to {MAX_LABEL_VALUE} characters")

    interval = options["interval"]
    if not math.isfinite(interval) or not 0 < interval <= 3600:
        raise CommandError(
            f"--interval must be more than 0 and at most 3600 seconds, not {interval}"
        )
    if options["max_buffer_bytes"] < MAX_CHUNK_BYTES:
        raise CommandError(
            f"--max-buffer-bytes must be at least {MAX_CHUNK_BYTES} (one log chunk), "
            f"not {options['max_buffer_bytes']}"
        )
    if options["top_processes"] < 0:
        raise CommandError("--top-processes must be 0 or more")

    state_dir = Path(options["state_dir"])
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create --state-dir {state_dir}: {exc}") from None
    if not os.access(state_dir, os.W_OK):
        raise CommandError(f"--state-dir {state_dir} is not writable")

    log_files = tuple(dict.fromkeys(options["log_files"]))  # the same file twice is one tail
    for path in log_files:
        if Path(path).is_dir():
            raise CommandError(f"--log-file {path} is a directory")

    return AgentConfig(
        server=server.rstrip("/"),
        token=token,
        node=node,
        interval=interval,
        log_files=log_files,
        labels=parse_labels(options["labels"]),
        state_dir=state_dir,
        max_buffer_bytes=options["max_buffer_bytes"],
        top_processes=options["top_processes"],
    )


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not value:
            raise CommandError(f"--label must look like name=value, not {item!r}")
        if not LABEL_NAME_RE.fullmatch(name) or name.startswith("__"):
            raise CommandError(
                f"--label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
            )
        if name in RESERVED_LABELS:
            raise CommandError(f"--label {name!r} is set by the agent itself; choose another name")
        if name in labels:
            raise CommandError(f"--label {name!r} is given twice")
        if len(value) > MAX_LABEL_VALUE:
            raise CommandError(
                f"--label {name!r} value is longer than {MAX_LABEL_VALUE} characters"
            )
        labels[name] = value
    return labels
