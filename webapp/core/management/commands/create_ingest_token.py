from django.core.management import BaseCommand, CommandError

from webapp.core import services
from webapp.core.models import IngestToken


class Command(BaseCommand):
    help = "Create an ingest token and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="a name for the client, e.g. prometheus-eu1")
        parser.add_argument(
            "--scope",
            action="append",
            choices=IngestToken.SCOPES,
            help="repeatable; default: metrics:write and logs:write",
        )
        parser.add_argument(
            "--rate-limit",
            type=int,
            help="samples or log lines per second for this token (0: unlimited); "
            "default TELLTALE_INGEST_RATE_LIMIT",
        )
        parser.add_argument(
            "--max-new-series",
            type=int,
            help="new series per window for this token (0: unlimited); "
            "default TELLTALE_INGEST_MAX_NEW_SERIES",
        )

    def handle(self, *args, name, scope, rate_limit, max_new_series, **options):
        scopes = scope or [IngestToken.SCOPE_METRICS_WRITE, IngestToken.SCOPE_LOGS_WRITE]
        for option, value in (("--rate-limit", rate_limit), ("--max-new-series", max_new_series)):
            if value is not None and value < 0:
                raise CommandError(f"{option} must not be negative")
        try:
            token, raw = services.create_ingest_token(name, scopes)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if rate_limit is not None or max_new_series is not None:
            services.set_ingest_token_quotas(
                token, rate_limit=rate_limit, max_new_series=max_new_series
            )
        self.stderr.write(
            f"token {token.name!r} with scopes {', '.join(token.scopes)}; shown once:"
        )
        self.stdout.write(raw)
