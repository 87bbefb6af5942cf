"""The gRPC API (``grpc.aio``): ``ResourceService``, health and reflection, one idea per
module.

Nothing is re-exported here: importing one module (say :mod:`.positions`) does not load the
server. The process starts in :mod:`.server` (``phoenix-resources grpc``).
"""
