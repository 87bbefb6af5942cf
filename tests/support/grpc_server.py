"""A real gRPC server (``GrpcServer``) in a thread of the test process, a real channel to it,
and the assertion every error test makes (status code + ErrorInfo reason)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.grpc.edge import CODE_METADATA, DOMAIN
from phoenix_resources.entrypoints.grpc.server import GrpcServer
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc


def grpc_settings(settings: Settings, read_url: str, **overrides: Any) -> Settings:
    """The test's settings, reading through the read-only role, on a free port."""
    base: dict[str, Any] = {"read_database_url": read_url, "grpc_host": "127.0.0.1",
                            "grpc_port": 0, "db_pool_min": 1, "db_pool_max": 4}
    return settings.model_copy(update=base | overrides)


class RunningServer:
    """``with RunningServer(settings) as s:`` — ``s.stub`` talks to it over TCP."""

    def __init__(self, settings: Settings, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.server = GrpcServer(settings)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="grpc-server", daemon=True)
        self.metadata = metadata
        self.channel: grpc.Channel | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as e:
            self.errors.append(e)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.ready.wait(0.1):
            assert not self.errors, self.errors
            assert self.thread.is_alive(), "the server thread ended"
            assert time.monotonic() < deadline, "the gRPC server did not start in 60 s"
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = pb_grpc.ResourceServiceStub(self.channel)
        return self

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the gRPC server did not stop"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.channel is not None:
            self.channel.close()
        self.stop()
        assert not self.errors, self.errors


def refused(error: grpc.RpcError, status: grpc.StatusCode, reason: str) -> dict[str, str]:
    """Check a failed call: its status, the ErrorInfo in its rich status (reason, domain) and
    the ``phoenix-code`` mirror; returns the ErrorInfo metadata."""
    assert isinstance(error, grpc.Call)
    assert error.code() == status, (error.code(), error.details())
    rich = rpc_status.from_call(error)
    assert rich is not None, "no grpc-status-details-bin"
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    assert (info.reason, info.domain) == (reason, DOMAIN), error.details()
    assert (CODE_METADATA, reason) in tuple(error.trailing_metadata() or ())
    return dict(info.metadata)
