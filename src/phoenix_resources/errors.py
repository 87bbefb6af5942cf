"""One error tree for the whole service.

::

    PhoenixError
    ├── ConfigurationError          settings or environment unusable; fix and restart
    │   └── InvalidSetting          a setting's value refused by the settings model's own
    │                               validation (pydantic reports it naming the setting)
    ├── DecodeError                 bytes that are not a command (poison); routed to the DLQ
    │   └── MessageTooLarge         over PHOENIX_MAX_COMMAND_BYTES
    ├── RuleViolation               a rule refused a command; decide() turns it into a
    │                               Rejected outcome with the rule's code (domain/rules.py)
    ├── CommandInvalid              a command refused by client-side validation; nothing sent
    ├── TransientError              retried with backoff; never turns into data loss
    │   ├── DatabaseUnavailable     PostgreSQL down, restarting, or connection lost
    │   │   ├── DatabaseReadOnly    the node cannot write: a standby, a demoted primary
    │   │   │                       after a failover, default_transaction_read_only
    │   │   └── DatabaseRefused     PostgreSQL refused the work for a reason that is no
    │   │                           command's: a privilege, a table or column missing, a
    │   │                           cancelled statement, an SQLSTATE nobody classified
    │   ├── BrokerUnavailable       Kafka down or a delivery timed out
    │   │   └── BrokerUnreachable   no broker answered a connection check in time (client
    │   │                           library, CLI); the message names the bootstrap servers
    │   ├── RegistryUnavailable     the schema registry is down, slow or answers 5xx
    │   └── ConcurrentModification  another writer raced this batch; the batch is redone
    ├── RowRefused                  PostgreSQL refused a row for its content (SQLSTATE
    │                               class 22/23 …): maybe one command's fault; isolation
    │                               parks it only once the environment is proved healthy
    ├── BrokerFatal                 librdkafka reported a fatal error; the process must restart
    ├── RecordRefused               the broker refused some records of a publish for good (too
    │                               large, topic absent, not authorised); says which and why
    ├── DeliveryFailed              a produce was refused for good (client library)
    │   └── DeliveryUncertain       no acknowledgement: the record may or may not have been
    │                               written (retry with the same command_id)
    ├── OutcomeTimeout              no outcome arrived in time (client library)
    ├── UnexpectedAnswer            the HTTP API answered what the client cannot understand
    ├── ClientClosed                a publisher or subscriber used after close()
    ├── ApiProblem                  an HTTP answer with a stable RES-… code
    │                               (entrypoints/http/problems.py)
    └── StackError                  the local Kafka/PostgreSQL stack could not start or stop

Adapters translate driver errors into this tree with ``raise ... from e``. Only
:class:`TransientError` is retried. ``tests/unit/test_errors.py`` checks that every subclass
of :class:`PhoenixError` is drawn above and that the package raises nothing else of its own.
"""

from __future__ import annotations


class PhoenixError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(PhoenixError):
    pass


class InvalidSetting(ConfigurationError, ValueError):
    """Raised inside the settings model's validators: a ``ValueError`` too, so pydantic turns
    it into its ``ValidationError`` with the setting's name."""


class DecodeError(PhoenixError):
    """The bytes are not a command. ``reason`` is a short stable slug for the DLQ header."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MessageTooLarge(DecodeError):
    pass


class CommandInvalid(PhoenixError):
    """Raised by the client library before publishing; carries the rule's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransientError(PhoenixError):
    """Worth retrying: the world is expected to heal."""


class DatabaseUnavailable(TransientError):
    """The database cannot do the work now. Waited out; never charged to a command."""


class DatabaseReadOnly(DatabaseUnavailable):
    """Connected to a node that cannot write (``SQLSTATE 25006``): what every connection
    sees after a failover until it reconnects to the new primary."""


class DatabaseRefused(DatabaseUnavailable):
    """PostgreSQL refused the work with an SQLSTATE that does not describe data (a missing
    privilege, table or column, a cancelled statement, an unknown code): an operator's
    problem, waited out like an outage."""


class RowRefused(PhoenixError):
    """PostgreSQL refused a statement for the data in it (``sqlstate`` in class 22 or 23, a
    trigger's check). Not retried as is: the isolation finds the command it belongs to."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class BrokerUnavailable(TransientError):
    pass


class BrokerUnreachable(BrokerUnavailable):
    """A connection check failed: no broker of the bootstrap list answered in time."""


class RegistryUnavailable(TransientError):
    """Decoding waits for the registry; a good command is never dead-lettered for it."""


class ConcurrentModification(TransientError):
    pass


class BrokerFatal(PhoenixError):
    """Not retried: the client instance is unusable (e.g. fenced or misconfigured)."""


class RecordRefused(PhoenixError):
    """The broker refused records of one :func:`~phoenix_resources.adapters.kafka.publish_all`
    call for good: retrying the same bytes cannot succeed.

    Indices refer to the records in the order they were passed. ``refused`` maps each refused
    record to its reason (``CODE: text``); ``delivered`` were acknowledged; ``held`` were not
    sent because an earlier record with the same topic and key was refused (so that a later
    record never overtakes it). Every record is in exactly one of the three: when a record
    failed transiently, :class:`BrokerUnavailable` is raised instead.
    """

    def __init__(self, refused: dict[int, str], delivered: frozenset[int],
                 held: frozenset[int] = frozenset()) -> None:
        first = min(refused)
        super().__init__(f"{len(refused)} record(s) refused by the broker (first: #{first} "
                         f"{refused[first]}); {len(delivered)} delivered, {len(held)} held")
        self.refused = refused
        self.delivered = delivered
        self.held = held


class DeliveryFailed(PhoenixError):
    """The record was not delivered. As such (not a :class:`DeliveryUncertain`): refused, it
    was not written."""


class DeliveryUncertain(DeliveryFailed):
    """Whether the record was written is unknown (the acknowledgement did not come in time,
    the connection broke with the record in flight): send the command again with the same
    ``command_id`` — the worker applies it once however often it arrives."""


class OutcomeTimeout(PhoenixError):
    pass


class UnexpectedAnswer(PhoenixError):
    """The HTTP API (or a topic's metadata) answered something the client cannot use."""


class ClientClosed(PhoenixError):
    """A publisher or subscriber was used after ``close()``."""


class StackError(PhoenixError):
    pass
