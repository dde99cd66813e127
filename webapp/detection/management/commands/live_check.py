"""`manage.py live_check [--since ISO] [--until ISO] [--json OUT]`: how the promoted anomaly
model did on the live fleet against a simulator feed's ground truth (see
``webapp.detection.livecheck``)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from django.core.management import BaseCommand, CommandError

from webapp.detection.livecheck import anomaly_live_check


def _instant(value: str) -> datetime:
    # argparse turns this error into a usage message naming the option; a CommandError
    # raised while parsing escaped as a traceback.
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. {value}Z): {value!r}")
    return parsed


class Command(BaseCommand):
    help = "Live anomalies against the injected cases a simulator feed recorded."

    def add_arguments(self, parser):
        parser.add_argument("--since", type=_instant, help="default: when the model was promoted")
        parser.add_argument("--until", type=_instant, help="default: now")
        parser.add_argument("--json", dest="json_out", metavar="OUT")

    def handle(self, *args, since=None, until=None, json_out=None, **options):
        try:
            result = anomaly_live_check(since, until)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for key, value in result.items():
            if key != "missed":
                self.stdout.write(f"{key:28} {value}")
        for line in result["missed"]:
            self.stdout.write(f"missed: {line}")
        if json_out:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
            self.stderr.write(f"wrote {json_out}")
