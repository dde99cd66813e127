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

    def handle(self, *args, name, scope, **options):
        scopes = scope or [IngestToken.SCOPE_METRICS_WRITE, IngestToken.SCOPE_LOGS_WRITE]
        try:
            token, raw = services.create_ingest_token(name, scopes)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"token {token.name!r} with scopes {', '.join(token.scopes)}; shown once:"
        )
        self.stdout.write(raw)
