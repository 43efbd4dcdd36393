"""kafka-python, imported once with its DeprecationWarnings silenced (kafka-python 3.0.12 uses deprecated
importlib.resources calls; a Tansu difference kept in tests/test_tansu_differences.py)."""
import warnings

with warnings.catch_warnings():  # kafka-python 3.0.12 uses deprecated importlib.resources calls
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.errors as kafka_errors
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.errors import CorruptRecordError, UnsupportedCodecError
    from kafka.producer.future import FutureRecordMetadata
    from kafka.producer.producer_batch import ProducerBatch
    from kafka.record.memory_records import MemoryRecordsBuilder

__all__ = ['kafka_errors', 'KafkaAdminClient', 'KafkaConsumer', 'KafkaProducer', 'OffsetAndMetadata', 'TopicPartition', 'ConsumerRebalanceListener', 'CorruptRecordError', 'UnsupportedCodecError', 'FutureRecordMetadata', 'ProducerBatch', 'MemoryRecordsBuilder']
