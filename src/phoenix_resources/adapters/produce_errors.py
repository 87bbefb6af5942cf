"""What a failed produce means: wait it out, refuse the record for good, or stop the process.

librdkafka retries what it can by itself (``retries``, ``message.timeout.ms``); an error that
reaches a delivery report is final for *that attempt*. Whether a later attempt can succeed
depends on the code, not on ``KafkaError.retriable()``: the Python client builds delivery-report
errors from the bare code, so ``retriable()``, ``fatal()`` and ``txn_requires_abort()`` are
always ``False`` there (they are set only for errors raised by client calls). The table below
follows librdkafka's ``rd_kafka_handle_Produce_error`` and Kafka's Produce API error codes.

* :attr:`Verdict.FATAL` — the producer instance is unusable (idempotence state lost, fenced):
  :class:`~phoenix_resources.errors.BrokerFatal`, the process restarts.
* :attr:`Verdict.REFUSED` — the broker refused *this record* and would refuse it again
  (invalid record, topic not authorised, invalid topic name, timestamp out of range).
* :attr:`Verdict.TOO_LARGE` — ``MSG_SIZE_TOO_LARGE`` / ``RECORD_LIST_TOO_LARGE`` from the
  broker: the broker checks whole *batches*, so every record batched with an oversize one
  gets this code too. A record is refused for its size only when it fails alone.
* :attr:`Verdict.INNOCENT` — ``_INVALID_DIFFERENT_RECORD``: another record of the batch was
  invalid (KIP-467); this one is fine and is sent again alone.
* :attr:`Verdict.TOPIC_MISSING` — unknown topic or partition: refused only once the
  cluster's metadata confirms the topic does not exist (it may still be propagating).
* :attr:`Verdict.TRANSIENT` — everything else (broker down, timeouts, not enough replicas,
  no leader, throttling, purged queues, authentication): retried with backoff. An unknown
  code is transient too: parking or dead-lettering on a code nobody classified would turn a
  broker incident into mass data handling; waiting it out is what the service did before.
"""

from __future__ import annotations

from enum import Enum

from confluent_kafka import KafkaError


class Verdict(Enum):
    FATAL = "fatal"
    REFUSED = "refused"
    TOO_LARGE = "too-large"
    INNOCENT = "innocent"
    TOPIC_MISSING = "topic-missing"
    TRANSIENT = "transient"


_FATAL = frozenset({KafkaError._FATAL, KafkaError._FENCED, KafkaError._GAPLESS_GUARANTEE,
                    KafkaError.PRODUCER_FENCED})

_REFUSED = frozenset({
    KafkaError.INVALID_RECORD,                  # broker-side record validation failed
    KafkaError.INVALID_MSG_SIZE,                # negative/invalid size in the record
    KafkaError.INVALID_TIMESTAMP,               # outside message.timestamp.*.max.ms
    KafkaError.TOPIC_EXCEPTION,                 # INVALID_TOPIC_EXCEPTION: bad topic name
    KafkaError.TOPIC_AUTHORIZATION_FAILED,      # ACLs: librdkafka marks the topic errored
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,    # e.g. IdempotentWrite not granted
    KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,  # record features the topic cannot store
    KafkaError.POLICY_VIOLATION,                # a broker-side produce policy said no
})

_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})

_TOPIC_MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                            KafkaError._UNKNOWN_PARTITION})

_INNOCENT = getattr(KafkaError, "_INVALID_DIFFERENT_RECORD", -138)


def classify(err: KafkaError) -> Verdict:
    """The verdict for an error from a delivery report or from ``produce()``."""
    code = err.code()
    if err.fatal() or code in _FATAL:
        return Verdict.FATAL
    if code in _TOPIC_MISSING:
        return Verdict.TOPIC_MISSING
    if code in _TOO_LARGE:
        return Verdict.TOO_LARGE
    if code == _INNOCENT:
        return Verdict.INNOCENT
    if code in _REFUSED:
        return Verdict.REFUSED
    return Verdict.TRANSIENT


def describe(err: KafkaError) -> str:
    """``CODE: text`` — stable enough for a parked row's reason or a log line."""
    return f"{err.name()}: {err.str()}"


_NEVER_WRITTEN = frozenset({Verdict.REFUSED, Verdict.TOO_LARGE, Verdict.TOPIC_MISSING,
                            Verdict.INNOCENT})


def never_written(err: KafkaError) -> bool:
    """Whether a failed delivery report proves the record was not written: the broker
    refused it, or it was purged from the queue before it was sent. Anything else — timed out
    or cut off in flight, an unclassified code — may hide a written record."""
    return err.code() == KafkaError._PURGE_QUEUE or classify(err) in _NEVER_WRITTEN
