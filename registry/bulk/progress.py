"""Progress reporting for long imports and exports.

On a terminal: one line redrawn in place (bar, rows/s, rejects, ETA), then one for the merge of an
offline import (partitions done, ETA). Otherwise (a log file, CI): a plain line every ``interval``
seconds (``import: ...`` while reading, ``import merge: ...`` while merging). Nothing is printed
for a :class:`SilentProgress`.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    def update(self, rows: int, rejected: int, position: int, total: int | None) -> None:
        """Report ``rows`` read (and ``rejected`` of them) so far; ``position`` of ``total`` input
        bytes (``total`` None: unknown, no ETA)."""
        ...

    def merging(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` merge partitions committed (an offline import's last phase,
        after every row is read)."""
        ...

    def close(self) -> None: ...


class SilentProgress:
    def update(self, rows: int, rejected: int, position: int, total: int | None) -> None:
        return None

    def merging(self, done: int, total: int) -> None:
        return None

    def close(self) -> None:
        return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class TextProgress:
    """Writes to ``stream`` (stderr by default); a bar when it is a terminal."""

    def __init__(
        self, stream: TextIO | None = None, *, interval: float | None = None, label: str = "import"
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        self._first_rows: int | None = None
        self._state = (0, 0, 0, None)
        self._merge: tuple[int, int, float, int] | None = None
        """(partitions done, of total, when merging began, done then)"""

    def update(self, rows: int, rejected: int, position: int, total: int | None) -> None:
        if self._first_rows is None:
            self._first_rows = rows
        self._state = (rows, rejected, position, total)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def merging(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._merge is None:
            if self.tty:
                self._draw(now, final=True)  # the reading line stays as it ended
            self._merge = (done, total, now, done)
        else:
            self._merge = (done, total, self._merge[2], self._merge[3])
        if now - self._last >= self.interval or done == total:
            self._last = now
            self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        if self._merge is not None:
            self._draw_merge(now, final)
            return
        rows, rejected, position, total = self._state
        elapsed = max(now - self.started, 1e-9)
        rate = (rows - (self._first_rows or 0)) / elapsed
        fraction = position / total if total else None
        eta = ""
        if fraction and 0 < fraction < 1:
            eta = f" ETA {_duration(elapsed * (1 - fraction) / fraction)}"
        if self.tty:
            width = 24
            done = int(width * (fraction or 0))
            bar = f"[{'#' * done}{'.' * (width - done)}] {100 * (fraction or 0):5.1f}% " if total else ""
            line = f"\r{self.label} {bar}{rows:,} rows {rate:,.0f} rows/s {rejected:,} rejected{eta}\x1b[K"
            self.stream.write(line + ("\n" if final else ""))
        else:
            pct = f" {100 * fraction:.1f}%" if fraction is not None else ""
            self.stream.write(
                f"{self.label}: {rows} rows{pct} {rate:.0f} rows/s {rejected} rejected{eta}"
                f" elapsed {_duration(elapsed)}\n"
            )
        self.stream.flush()

    def _draw_merge(self, now: float, final: bool) -> None:
        assert self._merge is not None
        done, total, began, first = self._merge
        elapsed = now - began
        eta = ""
        if first < done < total:
            eta = f" ETA {_duration(elapsed * (total - done) / (done - first))}"
        if self.tty:
            width = 24
            filled = int(width * done / max(total, 1))
            bar = f"[{'#' * filled}{'.' * (width - filled)}]"
            line = f"\r{self.label} merging {bar} {done}/{total} partitions{eta}"
            self.stream.write(line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(
                f"{self.label} merge: {done}/{total} partitions{eta} elapsed {_duration(elapsed)}\n"
            )
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic(), final=True)
