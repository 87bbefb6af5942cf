"""PostgreSQL adapters: the worker's batch unit, the relay's outbox session, the API's read
queries, and the migrations."""

NOTIFY_CHANNEL = "phoenix_outbox"
"""Notified by every worker commit that inserted outbox rows; the leading relay listens."""
