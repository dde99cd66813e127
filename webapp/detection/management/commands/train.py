"""`manage.py train {anomaly,interference,mitigation} [--profile P] [--promote]`: train a
new version in this process (progress on stdout), as the Models page's button does in a
worker. Profiles: full (the evaluated configuration), demo (minutes), quick (seconds)."""

from __future__ import annotations

import json
import logging

from django.core.management import BaseCommand, CommandError

from webapp.detection import versions
from webapp.detection.models import ModelVersion
from webapp.detection.versions import PROFILES


class Command(BaseCommand):
    help = "Train a new model version and record it on the Models page."

    def add_arguments(self, parser):
        parser.add_argument("kind", nargs="?", choices=[k for k, _ in ModelVersion.KINDS])
        parser.add_argument(
            "--bootstrap",
            action="store_true",
            help="queue (not run) training of every kind never trained, for the workers",
        )
        parser.add_argument(
            "--profile",
            choices=sorted(PROFILES),
            help="training size: full (evaluated configuration; the default), demo (minutes), "
            "quick (seconds); with --bootstrap, TELLTALE_BOOTSTRAP_TRAINING is the default",
        )
        parser.add_argument(
            "--config", default="{}", help='JSON training options, e.g. {"epochs": 5}'
        )
        parser.add_argument(
            "--promote", action="store_true", help="promote it when training succeeds"
        )

    def handle(self, *args, kind: str, profile: str, config: str, promote: bool, **options):
        if options["bootstrap"]:
            queued = versions.bootstrap_models(profile)
            self.stdout.write(f"queued {len(queued)} first training run(s)")
            return
        if not kind:
            raise CommandError("name the kind to train, or pass --bootstrap")
        try:
            extra = json.loads(config)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from None
        train_options = {**PROFILES[profile or "full"][kind], **extra}
        logging.getLogger("models").setLevel(logging.INFO)
        version = versions.create_version(kind, {"train": train_options})
        self.stdout.write(f"training {kind} v{version.version} with {train_options or 'defaults'}")
        version = versions.run_training(version.pk)
        if version.training_state != ModelVersion.SUCCEEDED:
            raise CommandError(f"training failed: {version.error}")
        self.stdout.write(
            self.style.SUCCESS(f"{kind} v{version.version} trained: {version.artefact_path}")
        )
        for key, value in list(version.metrics.items())[:20]:
            self.stdout.write(f"    {key}: {value}")
        if promote and version.status != ModelVersion.PROMOTED:
            versions.promote(version, reason="manage.py train --promote")
        self.stdout.write(f"status: {ModelVersion.objects.get(pk=version.pk).status}")
