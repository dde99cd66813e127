"""The host agent loses its server: it keeps spooling to disk within its budget (dropping
the oldest chunks first, and counting them), then delivers the rest in order when a new
server process comes up on the same address, and reports what it dropped."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.reliability.conftest import (
    needs_profile,
    record,
    test_database_url,
    wait_until,
)
from tests.support import throwaway
from webapp.core.services import create_ingest_token
from webapp.telemetry import query
from webapp.telemetry.models import LogRecord, Node

pytestmark = [needs_profile]

BUDGET = 1 << 20  # the smallest the agent accepts: one log chunk
LINE_BYTES = 1000
BURST_LINES = 300  # ~300 KB per poll: several chunks, together well over the budget
BURSTS = 6
NODE = "rel-agent"


def line(n: int) -> str:
    text = f"rel-agent line {n:06d} "
    return text + "x" * (LINE_BYTES - len(text))


def spool_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in (state / "spool").glob("*/*.chunk"))


def delivered_numbers() -> list[int]:
    messages = LogRecord.objects.filter(message__startswith="rel-agent line").order_by("id")
    return [int(m.split()[2]) for m in messages.values_list("message", flat=True)]


def test_agent_spools_through_a_server_outage(clean_store, processes, tmp_path):
    _, token = create_ingest_token("rel-agent", ["metrics:write", "logs:write"])
    env = throwaway.app_env(test_database_url())
    web, base = processes.web(env)
    port = int(base.rsplit(":", 1)[1])
    log_file, state = tmp_path / "app.log", tmp_path / "agent"
    log_file.touch()
    agent = processes.agent(
        [
            *("--server", base, "--token", token, "--node", NODE, "--interval", "2"),
            *("--log-file", str(log_file), "--state-dir", str(state)),
            *("--max-buffer-bytes", str(BUDGET), "--top-processes", "0"),
        ]
    )
    wait_until(lambda: Node.objects.filter(name=NODE).exists(), 40, what="the agent's metrics")

    def write(numbers) -> None:
        with open(log_file, "a") as f:
            f.writelines(line(n) + "\n" for n in numbers)

    before = range(0, 50)
    write(before)
    wait_until(lambda: len(delivered_numbers()) == len(before), 20, what="lines before")

    web.stop()
    throwaway.wait_closed(port)
    outage_started = time.monotonic()
    largest_spool = 0
    during = range(len(before), len(before) + BURSTS * BURST_LINES)
    for b in range(BURSTS):
        write(during[b * BURST_LINES : (b + 1) * BURST_LINES])
        for _ in range(13):  # a poll (1 s) per burst
            largest_spool = max(largest_spool, spool_bytes(state))
            time.sleep(0.1)
    spooled = json.loads((state / "spool" / "state.json").read_text())
    web, _ = processes.web(env, port=port)  # a new server process on the same address
    outage_s = time.monotonic() - outage_started
    after = range(during.stop, during.stop + 20)
    write(after)
    wait_until(
        lambda: delivered_numbers()[-1:] == [after[-1]] and spool_bytes(state) == 0,
        60,
        what="the spool drained",
    )
    drained_s = time.monotonic() - outage_started - outage_s
    counters = json.loads((state / "spool" / "state.json").read_text())

    def reported_drops():
        found = query.select(f'telltale_agent_dropped_chunks_total{{node="{NODE}"}}')
        if not found:
            return None
        data = query.get_store().read_raw([found[0].id], 0, int(time.time() * 1000) + 60_000)
        values = data.get(found[0].id, ((), ()))[1]
        return int(values[-1]) if len(values) and values[-1] == counters["dropped_chunks"] else None

    reported = wait_until(reported_drops, 20, what="the drop count reported to the server")
    agent.stop()

    got = delivered_numbers()
    missing = sorted(set(during) - set(got))
    figures = {
        "lines_written": len(before) + len(during) + len(after),
        "lines_written_during_outage": len(during),
        "lines_delivered": len(got),
        "lines_dropped": len(missing),
        "dropped_range": [missing[0], missing[-1]] if missing else None,
        "budget_bytes": BUDGET,
        "largest_spool_bytes_seen": largest_spool,
        "spool_counters_at_reconnect": spooled,
        "spool_counters_end": counters,
        "dropped_chunks_reported_by_metric": reported,
        "outage_seconds": round(outage_s, 1),
        "drained_seconds_after_server_back": round(drained_s, 1),
    }
    record("agent_disconnect", figures)

    assert got == sorted(got) and len(got) == len(set(got)), "out of order or duplicated"
    assert set(before) <= set(got) and set(after) <= set(got)
    assert missing, "the outage wrote more than the budget: something had to be dropped"
    assert largest_spool <= BUDGET
    # Oldest first: every dropped line is older than every line kept after it, but the
    # chunk that was being sent when the budget was enforced may survive (it is pinned).
    kept_during = [n for n in got if n in set(during)]
    newest_dropped = missing[-1]
    survivors_after_drop = [n for n in kept_during if n > newest_dropped]
    assert survivors_after_drop == list(range(newest_dropped + 1, during.stop))
    assert counters["dropped_chunks"] >= 1 and counters["dropped_bytes"] >= len(missing) * 1000
    assert counters["rejected_chunks"] == 0 and counters["send_failures"] > 0
    assert reported == counters["dropped_chunks"]
