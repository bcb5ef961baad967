"""Formatting shared by the CLI's command modules."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp


def utc(ts: Timestamp) -> str:
    """``2026-11-28T12:46:03Z`` (UTC, whole seconds), or ``-`` for an unset timestamp."""
    if not ts.seconds and not ts.nanos:
        return "-"
    return dt.datetime.fromtimestamp(ts.seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
