"""The ceiling of ``grpc.aio`` itself on this machine: ``python -m bench.grpc_noop PORT
[PROCESSES]``.

A ``ResourceService`` whose ``GetResource`` answers one constant ``Resource`` (no database,
no edge, no metrics), on uvloop, with reflection (so ``ghz`` needs no proto file) — what a
Python gRPC server costs per call before it does any work; with ``PROCESSES`` > 1, that many
such servers on the port (``SO_REUSEPORT``, as ``PHOENIX_GRPC_PROCESSES`` does).
``bench/grpc_load.py`` measures it with the same client, in the same rounds, as the real
server.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any, cast

import grpc
import uvloop
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection

from phoenix_resources.entrypoints.grpc.server import SERVICE_NAME, MethodSymbols
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2_grpc as pb_grpc

ANSWER = pb.Resource(id="8c3f5a4e-2a4b-4d7e-9f43-0c6a0f6c1d2e", name="resource-000001",
                     config={"region": "eu-west-1", "tier": "gold", "replicas": "3"},
                     status=pb.RESOURCE_STATUS_ACTIVE, version=3,
                     last_command_id="1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed")


class Constant(pb_grpc.ResourceServiceServicer):
    async def GetResource(self, request: pb.GetResourceRequest,
                          context: Any) -> pb.Resource:
        return ANSWER


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    pb_grpc.add_ResourceServiceServicer_to_server(Constant(), server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, reflection.SERVICE_NAME), server,
        pool=cast(descriptor_pool.DescriptorPool, MethodSymbols(descriptor_pool.Default())))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def main(port: int, processes: int) -> None:
    others = [subprocess.Popen([sys.executable, "-m", "bench.grpc_noop", str(port)])
              for _ in range(processes - 1)]
    try:
        uvloop.run(serve(port))
    finally:
        for other in others:
            other.terminate()
            other.wait(10)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
