"""The hot in-process cache of encoded records, with separate positive and negative entries."""

from cache.record_cache import NEGATIVE, CacheStats, RecordCache

__all__ = ["NEGATIVE", "CacheStats", "RecordCache"]
