"""Code generated from ``proto/`` by ``grpcio-tools`` and ``mypy-protobuf``: never edit it.

Regenerate with ``make proto`` (``tests/support/protogen.py``);
``tests/unit/test_proto_generated.py`` fails when the files here differ from what the pinned
generators make of ``proto/``. The
proto files are compiled under the virtual path ``phoenix_resources/grpc_gen/`` so that the
generated imports resolve inside this package::

    from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2, resources_pb2_grpc
"""
