"""``manage.py syslog_listener``: receive syslog over UDP and TCP into the telemetry store."""

from __future__ import annotations

import argparse
import errno

from django.core.management.base import BaseCommand, CommandError

from ingest.syslog_listener import DEFAULT_HOST, DEFAULT_PORT, SyslogListener


class Command(BaseCommand):
    help = (
        "Listen for syslog messages (RFC 5424, RFC 3164; UDP datagrams and RFC 6587 TCP "
        "framing) and store them as log records. Stops cleanly on SIGTERM/SIGINT."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind")
        parser.add_argument(
            "--port", type=int, default=DEFAULT_PORT, help="port for both UDP and TCP"
        )
        parser.add_argument(
            "--udp", action=argparse.BooleanOptionalAction, default=True, help="listen on UDP"
        )
        parser.add_argument(
            "--tcp", action=argparse.BooleanOptionalAction, default=True, help="listen on TCP"
        )
        parser.add_argument(
            "--name",
            default=None,
            help="client name in ingest statistics (default: each sender's address)",
        )

    def handle(self, *args, host: str, port: int, udp: bool, tcp: bool, name: str | None, **kw):
        if not (udp or tcp):
            raise CommandError("nothing to listen on: --no-udp and --no-tcp both given")
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be between 0 and 65535, not {port}")
        listener = SyslogListener(host, port, udp=udp, tcp=tcp, name=name)
        try:
            listener.serve_forever(ready=self._announce)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {host} is already in use (another syslog daemon or"
                    " listener?); stop it or choose another --port"
                ) from exc
            if exc.errno == errno.EACCES:
                raise CommandError(
                    f"not allowed to bind {host}:{port}; ports below 1024 need privileges"
                ) from exc
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        self.stdout.write(f"syslog listener stopped: {listener.stats()}")

    def _announce(self, listener: SyslogListener) -> None:
        self.stdout.write(f"Listening for syslog on {' and '.join(listener.addresses())}")
        # Supervisors and tests read this line through a pipe, which would buffer it.
        self.stdout.flush()
