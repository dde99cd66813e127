"""The embedded broker's message files appear only when complete."""

from __future__ import annotations

import json
import threading

from kombu import Connection
from kombu.transport import filesystem

from workers import fstransport


def _connection(folder):
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    return Connection("filesystem://", transport=fstransport.Transport, transport_options=options)


def test_no_message_file_is_visible_while_it_is_being_written(tmp_path, monkeypatch):
    seen_mid_write = []
    real_dumps = fstransport.dumps

    def watching_dumps(payload):
        # Called while a message is being written: every queue file must already be whole.
        for path in tmp_path.glob("*.msg"):
            try:
                json.loads(path.read_bytes())
            except ValueError:
                seen_mid_write.append(path.name)
        return real_dumps(payload)

    monkeypatch.setattr(fstransport, "dumps", watching_dumps)
    monkeypatch.setattr(filesystem, "dumps", watching_dumps)  # kombu's own writer, if used
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("jobs")
        for i in range(3):
            queue.put({"n": i})
        assert seen_mid_write == []  # nothing a consumer could take half-written
        assert sorted(queue.get(timeout=1).payload["n"] for _ in range(3)) == [0, 1, 2]
        queue.close()


def test_concurrent_producer_and_consumer_lose_and_corrupt_nothing(tmp_path):
    sent = 300

    def produce():
        with _connection(tmp_path) as conn:
            queue = conn.SimpleQueue("jobs")
            for i in range(sent):
                queue.put({"n": i, "pad": "x" * 2000})
            queue.close()

    producer = threading.Thread(target=produce)
    producer.start()
    received = []
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("jobs")
        while len(received) < sent:
            message = queue.get(timeout=20)
            received.append(message.payload["n"])
            message.ack()
        queue.close()
    producer.join()
    assert sorted(received) == list(range(sent))
    assert not list(tmp_path.glob(".partial-*"))
