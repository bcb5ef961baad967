"""Backend-agnostic conformance tests for :class:`registry.store.Store`."""
