"""Every model change ships with its migration: a changed field (even a choice's label)
without one leaves installs' schemas behind the code."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_no_model_change_lacks_a_migration(db):
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # makemigrations --check exits 1 when one is missing
        raise AssertionError(f"a migration is missing:\n{out.getvalue()}") from exc
