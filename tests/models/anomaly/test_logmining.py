"""Log mining: the app's drain3 configuration, stable ids, hashed vocabulary."""

import numpy as np

from models.anomaly.logmining import (
    MASKS,
    LogMiner,
    TemplateTable,
    mine_to_table,
    template_buckets,
    template_id,
)


def test_masks_and_ids_match_the_app():
    from webapp.telemetry import identity, logtemplates

    assert MASKS == logtemplates.MASKS
    assert template_id("user <*> logged in") == identity.template_id("user <*> logged in")


def test_mining_gives_one_final_template_per_cluster():
    lines = [f"backup of /var/db/{n} finished in {n * 3} ms" for n in range(20)]
    lines += [f"connection from 10.0.0.{n} refused" for n in range(20)]
    table = TemplateTable(1024)
    idx, miner = mine_to_table(lines, table)
    assert len(set(idx[:20].tolist())) == 1 and len(set(idx[20:].tolist())) == 1
    assert "<IP>" in table.texts[idx[20]]
    # A serving miner seeded with the templates maps raw lines and template texts alike.
    serving = LogMiner([t for t, _ in miner.templates_by_count()])
    assert serving.lookup("connection from 10.1.2.3 refused") == table.texts[idx[20]]
    assert serving.lookup(table.texts[idx[0]]) == table.texts[idx[0]]


def test_buckets_are_stable_and_share_words():
    rows1, w1 = template_buckets("disk <*> failed with error <NUM>", 4096)
    rows2, _ = template_buckets("disk <*> failed with error <NUM>", 4096)
    rows3, _ = template_buckets("network link failed with error <NUM>", 4096)
    np.testing.assert_array_equal(rows1, rows2)
    assert w1[0] == 1.0 and abs(w1[1:].sum() - 1.0) < 1e-6
    assert len(set(rows1[1:]) & set(rows3[1:])) >= 3  # failed, with, error
    assert rows1.max() < 4096


def test_table_gather_is_csr():
    table = TemplateTable(64)
    a, b = table.add("one two"), table.add("three")
    rows, offsets, weights = table.gather(np.array([b, a]))
    assert offsets.tolist() == [0, 2]
    assert len(rows) == len(weights) == 5
