from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from tests.ingest.fuzzcount import COUNTS

    if COUNTS:
        terminalreporter.section("ingest fuzz and corpus cases")
        for what, n in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{what}: {n}")
