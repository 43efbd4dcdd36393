"""``--workers`` members on the confluent backend (issue 20): static membership, and an assignment that
leaves no partition without an owner when a second worker joins.

Before (cooperative-sticky with ``group.instance.id``, on Tansu): worker 0 owned all 8 partitions (4
input, 4 repartition); when worker 1 joined, worker 0 gave up the 4 repartition partitions and no
second round assigned them: 45 s later worker 1 still owned nothing, and keyless readings re-sent to
the repartition topic were not windowed by anyone. After ("range" for static members): each worker
owns 2 input and 2 repartition partitions within seconds.
"""
from __future__ import annotations

import time

import pytest

from monitor.daemon import worker_membership

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def test_a_second_static_worker_gets_half_of_every_topic(broker, topic_factory):
    from streams.kafka import KafkaSettings, TopicPartition, create_topics
    from streams.kafka.confluent import ConfluentSource

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    topic = topic_factory("in")
    group = f"g-{topic}"
    repartition = f"{group}.repartition"
    create_topics(settings, {topic: 4, repartition: 4})
    every = {TopicPartition(t, p) for t in (topic, repartition) for p in range(4)}

    def member(i: int) -> ConfluentSource:
        return ConfluentSource(settings, [topic, repartition], group, session_timeout_ms=6000,
                               **worker_membership(group, i)).open()

    def settle(members, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in members:
                m.poll(0.05)
            if done():
                return True
        return False

    m0 = member(0)
    members = [m0]
    try:
        assert settle(members, lambda: m0.assignment() == every, 30), m0.assignment()
        members.append(member(1))
        m1 = members[1]

        def split() -> bool:
            a0, a1 = m0.assignment(), m1.assignment()
            return (not a0 & a1 and a0 | a1 == every
                    and all({tp.topic for tp in a} == {topic, repartition} for a in (a0, a1)))

        assert settle(members, split, 45), (sorted(m0.assignment()), sorted(m1.assignment()))
        assert len(m0.assignment()) == len(m1.assignment()) == 4
    finally:
        for m in members:
            m.close()
