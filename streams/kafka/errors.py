"""The Kafka layer's exceptions (each message says what to do).

Part of :mod:`streams.kafka`.
"""
from __future__ import annotations



class KafkaPlumbingError(Exception):
    """Base class of the errors raised by this module."""


class KafkaConfigError(KafkaPlumbingError, ValueError):
    """A bad Kafka setting; the message names the field."""


class SeekOutOfRangeError(KafkaPlumbingError, ValueError):
    """A seek outside ``[beginning, end]`` of a partition (Kafka would reset silently)."""


class DeliveryError(KafkaPlumbingError):
    """Records sent through a :class:`Sink` were not delivered."""
