"""gRPC services: validate, call the core, map errors through :mod:`resolver.errors`."""
