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

    # --- gRPC API limits ----------------------------------------------------------------------
    grpc_page_max_bytes: int = Field(default=MIB, ge=16 * 1024)
    """Byte budget of one ``ListResources`` page (the encoded message), as for HTTP; must stay
    below ``PHOENIX_GRPC_MAX_MESSAGE_BYTES`` (and so below what clients accept: 4 MiB by
    default), else the page could not be sent."""
    grpc_max_message_bytes: int = Field(default=4 * MIB, ge=64 * 1024)
    """Largest message the gRPC server sends or receives (``grpc.max_send_message_length``,
    ``grpc.max_receive_message_length``); larger requests are refused ``RESOURCE_EXHAUSTED``
    before any handler runs."""

    @model_validator(mode="after")
    def _pages_fit_in_a_message(self) -> ServerLimits:
        if self.grpc_page_max_bytes >= self.grpc_max_message_bytes:
            raise InvalidSetting("PHOENIX_GRPC_PAGE_MAX_BYTES must be below "
                                 "PHOENIX_GRPC_MAX_MESSAGE_BYTES: a page must fit in a message")
        return self
