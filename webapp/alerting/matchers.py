"""Label matchers for routes, silences, inhibition and maintenance windows (the same
syntax as Prometheus selectors and Alertmanager: ``severity="critical", node=~"n1|n2"``),
and alert fingerprints."""

from __future__ import annotations

import hashlib
import json
import re

from webapp.telemetry.selectors import LABEL_RE, Matcher, SelectorError, parse_selector

ALERTNAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class MatcherError(ValueError):
    pass


def parse_matchers(text: str, *, require_one: bool = False) -> list[Matcher]:
    """``text`` with or without braces; blank is no matchers (matches everything)."""
    inner = (text or "").strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    if not inner:
        if require_one:
            raise MatcherError("at least one matcher is needed")
        return []
    try:
        # A placeholder matcher lets matchers that all match "" through (team="" is
        # a fine route), which parse_selector alone refuses for series selection.
        found = parse_selector('{__telltale__="x", ' + inner + "}")[1:]
    except SelectorError as exc:
        raise MatcherError(str(exc).replace("selector", "matchers")) from None
    if require_one and all(m.matches("") for m in found):
        raise MatcherError("at least one matcher must not match the empty string")
    return found


def matches(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


def format_matchers(matchers: list[Matcher]) -> str:
    return ", ".join(str(m) for m in matchers)


def matchers_for_labels(labels: dict[str, str]) -> str:
    """A silence that matches exactly this alert."""
    return format_matchers([Matcher(k, "=", v) for k, v in sorted(labels.items())])


def fingerprint(labels: dict[str, str]) -> str:
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_label_names(labels: dict) -> dict[str, str]:
    if not isinstance(labels, dict):
        raise MatcherError("labels must be a JSON object")
    for key, value in labels.items():
        if not LABEL_RE.fullmatch(key) or key.startswith("__"):
            raise MatcherError(f"{key!r} is not a valid label name")
        if not isinstance(value, str):
            raise MatcherError(f"the value of {key!r} must be a string")
    return labels
