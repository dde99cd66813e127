"""`manage.py interference_lab --duration ...`: real co-location experiments on this host
(see models/interference/lab.py and docs/interference.md)."""

from __future__ import annotations

import argparse

from django.core.management import BaseCommand, CommandError
from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Measure a victim benchmark alone and next to stressors; write a dataset."

    def add_arguments(self, parser: CommandParser):
        from models.interference.lab import add_arguments

        add_arguments(parser)

    def handle(self, *args, **options):
        from models.interference import lab

        parser = argparse.ArgumentParser()
        lab.add_arguments(parser)
        names = {a.dest for a in parser._actions}
        try:
            result = lab.run(
                argparse.Namespace(**{k: v for k, v in options.items() if k in names}),
                log=self.stdout.write,
            )
        except (RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(result.get("summary", result)))
