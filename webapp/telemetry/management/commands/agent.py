"""`manage.py agent`: run the Telltale host agent (``ingest.agent``) on this host.

A thin wrapper: the options, their checks and the run are ``ingest.agent.cli``'s, the same
as ``python -m ingest.agent`` on a host without the web app.
"""

from __future__ import annotations

import argparse
import os
import sys

from django.core.management import BaseCommand, CommandError

from ingest.agent.cli import DESCRIPTION, ConfigError, add_arguments, config_from_args, execute


class Command(BaseCommand):
    help = DESCRIPTION

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        try:
            config = config_from_args(argparse.Namespace(**options), os.environ)
            status = execute(config, once=options["once"], stdout=self.stdout, stderr=self.stderr)
        except (ConfigError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        if status:
            sys.exit(status)
