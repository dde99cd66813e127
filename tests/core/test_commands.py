from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from webapp.core.models import IngestToken
from webapp.core.services import hash_token
from webapp.core.tokens import authenticate


def test_create_ingest_token_prints_it_once_and_stores_the_hash(db):
    out, err = StringIO(), StringIO()
    call_command(
        "create_ingest_token", "prom-eu1", "--scope", "metrics:write", stdout=out, stderr=err
    )
    raw = out.getvalue().strip()
    token = IngestToken.objects.get(name="prom-eu1")
    assert token.token_hash == hash_token(raw) and token.scopes == ["metrics:write"]
    assert raw not in err.getvalue() and "shown once" in err.getvalue()
    assert authenticate(raw).name == "prom-eu1"


def test_create_ingest_token_refuses_a_duplicate_name(db):
    call_command("create_ingest_token", "dup", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_ingest_token", "dup", stdout=StringIO(), stderr=StringIO())
