"""Prometheus series selectors: ``metric{label="v", other=~"re.*"}`` -> matchers.

Only plain selectors are supported (no functions or operators); the parser says so in
its error instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
OPS = ("=~", "!~", "!=", "=")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "`": "`"}


class SelectorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "regex", re.compile(self.value))
            except re.error as exc:
                raise SelectorError(f"invalid regular expression {self.value!r}: {exc}") from None

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self.regex.fullmatch(value) is not None  # Prometheus anchors regexes
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_selector(text: str) -> list[Matcher]:
    text = text.strip()
    if not text:
        raise SelectorError("empty query")
    pos = 0
    matchers: list[Matcher] = []
    name_match = NAME_RE.match(text)
    if name_match:
        matchers.append(Matcher("__name__", "=", name_match.group()))
        pos = name_match.end()
    pos = _skip_space(text, pos)
    if pos < len(text):
        if text[pos] != "{":
            raise SelectorError(
                f"unexpected {text[pos]!r} at position {pos}: only plain series selectors"
                ' like metric{label="value"} are supported'
            )
        pos = _parse_braces(text, pos + 1, matchers)
        pos = _skip_space(text, pos)
        if pos != len(text):
            raise SelectorError(
                f"unexpected {text[pos : pos + 10]!r} after the selector: functions, ranges and"
                " operators are not supported"
            )
    if not matchers:
        raise SelectorError("a selector needs a metric name or at least one label matcher")
    if all(m.matches("") for m in matchers):
        raise SelectorError("vector selector must contain at least one non-empty matcher")
    return matchers


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_braces(text: str, pos: int, matchers: list[Matcher]) -> int:
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text):
            raise SelectorError("unclosed '{' in selector")
        if text[pos] == "}":
            return pos + 1
        label = LABEL_RE.match(text, pos)
        if not label:
            raise SelectorError(f"expected a label name at position {pos}")
        pos = _skip_space(text, label.end())
        op = next((o for o in OPS if text.startswith(o, pos)), None)
        if op is None:
            raise SelectorError(f"expected one of = != =~ !~ after {label.group()!r}")
        pos = _skip_space(text, pos + len(op))
        value, pos = _parse_string(text, pos)
        matchers.append(Matcher(label.group(), op, value))
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] != "}":
            raise SelectorError(f"expected ',' or '}}' at position {pos}")


def _parse_string(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text) or text[pos] not in "\"'`":
        raise SelectorError(f"expected a quoted label value at position {pos}")
    quote = text[pos]
    pos += 1
    out = []
    while pos < len(text):
        ch = text[pos]
        if ch == quote:
            return "".join(out), pos + 1
        if ch == "\\" and quote != "`":
            pos += 1
            if pos >= len(text):
                break
            out.append(ESCAPES.get(text[pos], "\\" + text[pos]))
        else:
            out.append(ch)
        pos += 1
    raise SelectorError("unterminated label value string")
