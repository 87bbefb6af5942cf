"""Generated package (see ``phoenix_resources.grpc_gen``)."""
