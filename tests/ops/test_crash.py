"""kill -9 the server during batch ingests: after a restart no acknowledged memory is
missing, no batch is half there, the outbox drains by itself and no reindex is needed."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter

import httpx

from tests.helpers.backup import all_ids, manage_process, set_up_demo
from tests.servers import DaphneServer

BATCH = 25


def test_kill_9_during_batch_ingest(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    acked: list[int] = []
    sent = Counter()
    stop = threading.Event()
    server = DaphneServer(tmp_path / "daphne.log", embedded_env)
    server.start()

    def writer(number: int) -> None:
        client = httpx.Client(base_url=server.url, timeout=30,
                              headers={"Authorization": f"Bearer {key}"})
        batch = number * 100_000
        while not stop.is_set():
            body = {"memories": [{"content": f"batch {batch} item {i}: the kiln is at "
                                  f"{batch % 997} degrees, shelf {i}."} for i in range(BATCH)]}
            try:
                sent[batch] += 1
                response = client.post("/api/v1/memories/batch", params={"namespace": "demo"},
                                       json=body)
            except httpx.HTTPError:
                return  # the server died under this request: not acknowledged
            assert response.status_code == 201, response.text
            acked.append(batch)
            batch += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while len(acked) < 12:
        time.sleep(0.05)
    server.process.kill()  # SIGKILL: no shutdown, no flush, mid-request
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(sent) > len(acked)  # at least one batch was in flight when it died

    with DaphneServer(tmp_path / "restarted.log", embedded_env) as again:
        ids = all_ids(again.url, key)
        client = httpx.Client(base_url=again.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        per_batch: Counter = Counter()
        offset = 0
        while True:
            page = client.get("/api/v1/memories", params={"namespace": "demo", "limit": 1000,
                                                           "offset": offset}).json()["results"]
            for memory in page:
                per_batch[int(re.match(r"batch (\d+) ", memory["content"]).group(1))] += 1
            if len(page) < 1000:
                break
            offset += 1000
        assert sum(per_batch.values()) == len(ids)
        assert all(per_batch[batch] == BATCH for batch in acked), "an acknowledged batch is missing"
        assert set(per_batch.values()) == {BATCH}, f"half a batch is visible: {per_batch}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the server drains what was not indexed
            ready = client.get("/readiness").json()
            if ready.get("outbox_backlog") == 0:
                break
            time.sleep(0.5)
        assert ready["outbox_backlog"] == 0, ready
    stats = json.loads(manage_process(embedded_env, "stats", "--json").stdout)  # server stopped
    (row,) = stats["namespaces"]
    assert row["health"] == "ok" and row["vector_entries"] == row["memories"] == len(ids), row
