"""How many fuzz and corpus cases ran, printed at the end of the run (see conftest.py)."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def add(what: str, n: int = 1) -> None:
    COUNTS[what] += n
