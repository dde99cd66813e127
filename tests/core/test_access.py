"""Every URL refuses anonymous requests, except the few that must be public."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Reachable without a login: health for orchestrators, the login page itself.
PUBLIC = {"healthz", "readyz", "login", "admin:login", "logout", "admin:logout"}
GROUP_RE = re.compile(r"\(\?P<(\w+)>([^)]*)\)")


def _concrete(pattern: str) -> str:
    """A URL that the pattern matches, with placeholder values for its parameters."""
    pattern = re.sub(r"<int:\w+>", "1", pattern)
    pattern = re.sub(r"<(?:str|slug):\w+>", "x", pattern)
    pattern = re.sub(r"<path:\w+>", "x/y", pattern)
    pattern = re.sub(r"<\w+>", "x", pattern)

    def group(match):
        body = match.group(2)
        if "|" in body:
            return body.split("|")[0]
        return "1" if "\\d" in body or "0-9" in body else "x"

    pattern = GROUP_RE.sub(group, pattern)
    return "/" + pattern.replace("^", "").replace("$", "").replace("\\", "")


def _walk(resolver, prefix="", namespace=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield f"{namespace}{entry.name or ''}", prefix + str(entry.pattern)


ALL = sorted(set(_walk(get_resolver())))


def _refused(response) -> bool:
    if response.status_code in (401, 403):
        return True
    if response.status_code == 302:
        return "/login/" in response["Location"]
    return False


@pytest.mark.django_db
@pytest.mark.parametrize("name, pattern", [p for p in ALL if p[0] not in PUBLIC])
def test_anonymous_requests_are_refused(client, name, pattern):
    url = _concrete(pattern)
    answers = {method: getattr(client, method)(url) for method in ("get", "post")}
    allowed = [m for m, r in answers.items() if r.status_code < 300 or r.status_code == 404]
    assert not allowed, f"{name} ({url}) answered {answers}"
    assert any(_refused(r) for r in answers.values()), f"{name} ({url}) answered {answers}"


def test_the_walk_covers_the_app():
    names = {name for name, _ in ALL}
    for expected in ("overview", "remote_write", "prom_query_range", "token_list", "metrics"):
        assert expected in names
