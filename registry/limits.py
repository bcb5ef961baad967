"""Every size and count the node enforces, in one place. README.md's "Limits" table mirrors this."""

from typing import Final

IDENTIFIER_MAX_CHARS: Final = 255
"""A whole identifier, prefix + "/" + suffix, in Unicode code points."""
PREFIX_MAX_CHARS: Final = 64
SEGMENT_MAX_CHARS: Final = 32
"""One dot-separated prefix segment."""
VALUES_MAX: Final = 256
"""Values in one record."""
TYPE_MAX_CHARS: Final = 128
VALUE_DATA_MAX_BYTES: Final = 16 * 1024
"""One value's data: UTF-8 bytes of text, or raw bytes."""
RECORD_MAX_BYTES: Final = 64 * 1024
"""A whole encoded record."""
DEFAULT_TTL_SECONDS: Final = 86400
BATCH_RESOLVE_MAX: Final = 1000
"""Identifiers in one BatchResolve call or one StreamResolve message."""
BATCH_CREATE_MAX: Final = 2000
PAGE_SIZE_DEFAULT: Final = 100
PAGE_SIZE_MAX: Final = 1000
REQUEST_ID_MAX_CHARS: Final = 128
DISPLAY_NAME_MAX_CHARS: Final = 200
CONTACT_MAX_CHARS: Final = 200
MESSAGE_MAX_BYTES: Final = 4 * 1024 * 1024
"""A gRPC message in either direction (BatchCreate of 2,000 records fits within it for typical
records; a batch larger than this is refused as RESOURCE_EXHAUSTED by gRPC itself)."""
