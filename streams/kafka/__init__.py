"""Kafka plumbing: settings, admin, a consumer-group source and a sink, on two client libraries.

One concept a file: ``settings`` (:class:`KafkaSettings`, one schema mapped to each client),
``admin`` (topics, partitions, offsets, groups), ``source`` and ``sink`` (the kafka-python backend:
:class:`Source`, :class:`Sink`), ``confluent`` (the librdkafka backend, the daemon's default:
``ConfluentSource``, ``ConfluentSink``, the same interface), ``fetch`` (kafka-python's fetched
batches decoded fast, unreadable batches skipped), ``errors``.

Everything here works against Apache Kafka and against the embedded Tansu broker
(:mod:`streams.broker`). Tansu 0.6 differs from Kafka in a few places; the code below
works around each of them (``tests/test_tansu_differences.py`` keeps a regression test
per difference):

* ``end_offsets``, ``seek_to_end`` and admin LATEST offsets report the start of the
  last record batch + 1, not the end: :func:`partition_end` reads the high watermark
  from a fetch response instead (``consumer.highwater(tp)`` after a poll).
* ``offsets_for_times`` ignores the timestamp and answers offset 0:
  :func:`offsets_for_times` checks the broker's answer against the record timestamps
  and falls back to a binary search over offsets (timestamps assumed non-decreasing
  within a partition, as Kafka's time index assumes).
* seeking past the end raises nothing and fetches nothing: :meth:`Source.seek` checks
  the offset against the real partition bounds.
* kafka-python's ``describe_groups`` fails on the ACL bits Tansu reports:
  :func:`describe_group` skips that decoding.
* a blocking ``commit()`` inside a rebalance listener raises ``RuntimeError`` (the
  listener runs on kafka-python 3's IO thread): :meth:`Source.commit` notices it is on
  that thread and uses ``commit_async``.
* ``import kafka`` emits DeprecationWarnings: this module imports it with them
  silenced.
* committed offsets come back without their metadata string: nothing here relies on
  commit metadata.
* (kafka-python 3.0.12) a group join that completes between two short polls is dropped
  and started over; with Tansu's ~3 s joins a second member could wait 30-75 s:
  :meth:`Source.poll` finishes a pending join in one call.

Examples
--------
>>> s = KafkaSettings(bootstrap_servers="broker:9093", security_protocol="SASL_SSL",
...                   sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="anomon",
...                   sasl_plain_password="hunter2", ssl_cafile=None)
>>> cfg = s.to_kafka_python()
>>> cfg["sasl_plain_password"], cfg["security_protocol"]
('hunter2', 'SASL_SSL')
>>> "hunter2" in repr(s) or "hunter2" in str(s)
False
"""
from __future__ import annotations

from streams.kafka._lib import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from streams.kafka.admin import (
    committed_offsets, create_topics, describe_group, offsets_for_times, partition_end, partition_ends, topic_ids,
    topic_partitions,
)
from streams.kafka.errors import DeliveryError, KafkaConfigError, KafkaPlumbingError, SeekOutOfRangeError
from streams.kafka.settings import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaSettings, Secret
from streams.kafka.sink import Sink, encode_records
from streams.kafka.source import Hook, Source

__all__ = [
    "KafkaConfigError", "KafkaPlumbingError", "SeekOutOfRangeError", "DeliveryError",
    "Secret", "KafkaSettings", "SECURITY_PROTOCOLS", "SASL_MECHANISMS", "TopicPartition", "create_topics",
    "topic_partitions", "partition_end", "partition_ends", "topic_ids", "offsets_for_times", "describe_group",
    "committed_offsets", "Source", "Hook", "Sink", "encode_records",
    "KafkaConsumer", "KafkaProducer", "KafkaAdminClient", "OffsetAndMetadata",
]  # fmt: skip
