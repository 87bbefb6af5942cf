"""The servers' limits: what one client may take of the HTTP and gRPC APIs (bytes per answer,
connections, time to send a request, streams, buffers). Part of the settings model —
:class:`~phoenix_resources.config.Settings` inherits them, read like every other setting
(``PHOENIX_`` prefix) and documented in ``docs/configuration.md`` from the docstrings below,
under their ``# --- Section ---`` comments. Kept apart so ``config.py`` stays readable.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phoenix_resources.errors import InvalidSetting

MIB = 1024 * 1024


class ServerLimits(BaseSettings):
    """The limits of the HTTP and gRPC servers (a part of the settings model)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    # --- HTTP API limits ----------------------------------------------------------------------
    http_page_max_bytes: int = Field(default=MIB, ge=16 * 1024)
    """Byte budget of one ``GET /api/v1/resources`` page: the page ends before the resource
    that would take its items past this (never before the first one), and ``next_cursor``
    continues after the last one sent, so nothing is skipped. ``limit`` still caps the count."""
    http_max_connections: int = Field(default=1024, ge=1)
    """Client connections one server process holds at most. At the bound, a new connection
    takes the place of the one that has waited longest (sending a request head, or idle
    between requests), which is closed; only when every connection has a request in progress
    is it answered ``503`` ``RES-007`` and closed. Keep it well below the open-files limit
    (the servers raise their soft limit to the hard one at start and warn when it is short)."""
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    """Time a client has to send a request's headers, from the connection (or the first byte
    of a later request on a kept-alive connection); past it the connection is closed (408
    ``RES-003`` when part of a request had arrived). Authentication runs only once headers
    are complete, so this is what bounds an unauthenticated client."""
    http_body_timeout_s: float = Field(default=10.0, gt=0)
    """Time a client has to send a request's body once its headers are complete; past it the
    connection is closed. (The API reads no bodies; this bounds a client that sends one
    slowly.)"""
    http_keepalive_timeout_s: int = Field(default=5, ge=1)
    """An idle kept-alive connection is closed after this many seconds without a new request
    (uvicorn's ``timeout_keep_alive``)."""

    list_cache_bytes: int = Field(default=16 * MIB, ge=0)
    """Memory a server process (HTTP API, gRPC) gives to resource documents it has listed: a
    page is then read as ``(id, version)`` pairs and its documents reused when every one is
    kept for the version read (a version names one document, as the ETag says). ``0``: none.
    The least recently listed leave first."""

    # --- gRPC API limits ----------------------------------------------------------------------
    grpc_page_max_bytes: int = Field(default=MIB, ge=16 * 1024)
    """Byte budget of one ``ListResources`` page (the encoded message), as for HTTP; must stay
    below ``PHOENIX_GRPC_MAX_MESSAGE_BYTES`` (and so below what clients accept: 4 MiB by
    default), else the page could not be sent."""
    grpc_lookup_cache_bytes: int = Field(default=16 * MIB, ge=0)
    """Memory a gRPC server process gives to encoded ``GetResource`` answers, each kept with
    the document it was built from and reused only when a call reads that very document
    (every call still reads the database). ``0``: none. The least recently read leave first."""
    grpc_max_message_bytes: int = Field(default=4 * MIB, ge=64 * 1024)
    """Largest message the gRPC server sends or receives (``grpc.max_send_message_length``,
    ``grpc.max_receive_message_length``); larger requests are refused ``RESOURCE_EXHAUSTED``
    before any handler runs."""
    grpc_max_connections: int = Field(default=512, ge=1)
    """Client connections the gRPC server accepts at once
    (``grpc.max_allowed_incoming_connections``); more are closed as they arrive."""
    grpc_handshake_timeout_s: float = Field(default=10.0, gt=0)
    """Time a new connection has to complete the HTTP/2 start (the client's preface and
    settings; ``grpc.server_handshake_timeout_ms``); past it the connection is closed. The
    gRPC default is 120 s: a client that connects and sends nothing held its socket that
    long."""
    grpc_max_concurrent_rpcs: int = Field(default=1000, ge=1)
    """Calls (streams included) the server runs at once; more are refused at once with
    gRPC's own ``RESOURCE_EXHAUSTED`` (``maximum_concurrent_rpcs``): retry with backoff."""
    grpc_max_concurrent_streams: int = Field(default=100, ge=1)
    """Calls one connection may have open at once (HTTP/2 ``SETTINGS_MAX_CONCURRENT_STREAMS``,
    ``grpc.max_concurrent_streams``); a client opens more connections for more."""
    grpc_keepalive_s: float = Field(default=60.0, gt=0)
    """The server pings a connection that has been silent this long and closes it when no
    answer comes within 20 s (``grpc.keepalive_time_ms``): connections of clients that
    vanished do not pile up."""
    grpc_client_ping_min_interval_s: float = Field(default=30.0, gt=0)
    """Keepalive enforcement: a client pinging more often than this (or pinging with no call
    open) gets a strike, and the connection is closed (``GOAWAY`` ``too_many_pings``) after
    two (``grpc.http2.min_ping_interval_without_data_ms``, ``grpc.http2.max_ping_strikes``).
    Clients' ``keepalive_time`` must stay above it."""
    grpc_watch_buffer_bytes: int = Field(default=MIB, ge=64 * 1024)
    """Events one ``WatchResources`` stream may hold ahead of its client: its consumer's
    prefetch (``queued.max.messages.kbytes``, ``fetch.max.bytes``,
    ``max.partition.fetch.bytes``; librdkafka's defaults let a consumer queue 64 MiB). A slow
    client then holds this much, not more: the stream reads on as it sends."""
    grpc_max_connection_idle_s: float = Field(default=300.0, gt=0)
    """A connection with no call open for this long is closed with ``GOAWAY`` (clients
    reconnect transparently; ``grpc.max_connection_idle_ms``)."""

    @model_validator(mode="after")
    def _pages_fit_in_a_message(self) -> ServerLimits:
        if self.grpc_page_max_bytes >= self.grpc_max_message_bytes:
            raise InvalidSetting("PHOENIX_GRPC_PAGE_MAX_BYTES must be below "
                                 "PHOENIX_GRPC_MAX_MESSAGE_BYTES: a page must fit in a message")
        return self
