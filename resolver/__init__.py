"""Adapters around the core: the gRPC server and its services, interceptors, PKI, client and CLI."""
