"""`manage.py evaluate {anomaly,interference,mitigation} ...`: the models' evaluations.

Each model package owns its evaluation (``models/<kind>/evaluate.py``: arguments, run,
table); this command only dispatches, prints the table and writes ``--json OUT``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from django.core.management import BaseCommand, CommandError
from django.core.management.base import CommandParser

KINDS = ("anomaly", "interference", "mitigation")


def _module(kind: str):
    return importlib.import_module(f"models.{kind}.evaluate")


class Command(BaseCommand):
    help = "Evaluate a model on a dataset (see docs/<kind>.md for the protocol)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="kind", required=True, parser_class=CommandParser)
        for kind in KINDS:
            _module(kind).add_arguments(sub.add_parser(kind, help=f"evaluate the {kind} model"))

    def handle(self, *args, kind: str, **options):
        module = _module(kind)
        names = {a.dest for a in self._arguments(kind)}
        namespace = argparse.Namespace(**{k: v for k, v in options.items() if k in names})
        try:
            result = module.run(namespace)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(module.format_table(result))
        out = options.get("json_out")
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(result, indent=1, default=float) + "\n")
            self.stderr.write(f"wrote {out}")

    def _arguments(self, kind: str):
        parser = argparse.ArgumentParser()
        _module(kind).add_arguments(parser)
        return parser._actions
