"""The identifier registry core: grammar, records, validation, the storage interface and its backends.

Modules here import no grpc and no CLI. Storage drivers live in their own modules
(``registry.rocks``) and are only imported by whoever assembles a node.
"""
