"""Each topic is read by one agent: Faust never finishes a rebalance (or a clean stop) otherwise.

Faust counts a record once per agent reading its topic; on a revocation it clears the
agents' queues without releasing the copies they held, then `Consumer.wait_empty`
waits for ever for a record one agent finished and the other never will. Found by
tests/faults/test_rebalance.py (a second worker joining under load never got a partition).
"""

from __future__ import annotations

from collections import Counter

from app.settings import Settings
from app.stream.app import create_worker


def test_no_topic_is_read_by_two_agents(tmp_path):
    worker = create_worker(Settings(worker_data_dir=tmp_path, topic_prefix="p."), instances={})
    readers: Counter[str] = Counter()
    for agent in worker.app.agents.values():
        for topic in agent.channel.topics:
            readers[topic] += 1
    assert readers, "no agent found"
    assert [t for t, n in readers.items() if n > 1] == []
    assert "p.hookstream.sync.control" in readers
