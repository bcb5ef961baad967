"""The identifier grammar.

An identifier is ``PREFIX "/" SUFFIX``:

- PREFIX is one or more segments joined by ``.``; a segment is 1 to 32 ASCII letters or digits
  (``[A-Za-z0-9]{1,32}``). The whole prefix is at most 64 characters. The first segments are the
  node prefix (``88.118``), the next one the enterprise code (``88.118.8``); an enterprise may
  register under deeper sub-prefixes of its own (``88.118.8.1``).
- SUFFIX is everything after the first ``/``: one or more printable Unicode characters, where
  printable is Python's ``str.isprintable`` (no control, format, surrogate, private-use or
  unassigned characters, and no separators except the ASCII space), with no leading or trailing
  space. ``/`` and ``.`` are allowed in it.
- The whole identifier is at most 255 characters.

Case: identifiers are ASCII case-insensitive, as in the Handle System: ``a``-``z`` fold to
``A``-``Z`` and nothing else folds (no Unicode case folding or normalization, so ``é`` and ``É``
stay distinct). The node stores the spelling given at creation and answers with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry import limits
from registry.errors import InvalidArgument

_SEG = f"[A-Za-z0-9]{{1,{limits.SEGMENT_MAX_CHARS}}}"
_SEGMENT = re.compile(_SEG)
_PREFIX = re.compile(rf"{_SEG}(?:\.{_SEG})*")
_HEAD = re.compile(rf"{_SEG}(?:\.{_SEG})*/")
"""A well-formed prefix and the first ``/`` (segments hold no ``/``, so it is the first)."""


def prefix_length(text: str) -> int:
    """The length of the prefix of ``text`` when ``text`` is a well-formed identifier, else 0.

    This is the grammar (module docstring) in one test; :func:`parse` applies it first and only
    works out *why* an identifier is bad when it fails. The prefix and ``/`` are printable ASCII,
    so ``text.isprintable()`` is exactly the suffix's printability rule.
    """
    if not 0 < len(text) <= limits.IDENTIFIER_MAX_CHARS:
        return 0
    head = _HEAD.match(text)
    if head is None:
        return 0
    end = head.end()  # just past the "/"
    if end > limits.PREFIX_MAX_CHARS + 1 or end == len(text) or text[end] == " " or text[-1] == " ":
        return 0
    return end - 1 if text.isprintable() else 0


def fold(text: str) -> bytes:
    """The storage key of an identifier or prefix: its UTF-8 bytes with ASCII letters upper-cased.

    ``bytes.upper`` touches only ASCII, which is exactly the case rule.
    """
    return text.encode("utf-8", "surrogatepass").upper()


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` is not a well-formed prefix, or None if it is."""
    if not prefix:
        return "must not be empty"
    if len(prefix) > limits.PREFIX_MAX_CHARS:
        return f"must be at most {limits.PREFIX_MAX_CHARS} characters"
    if not _PREFIX.fullmatch(prefix):
        return (
            "must be dot-separated segments of 1 to "
            f"{limits.SEGMENT_MAX_CHARS} ASCII letters or digits, e.g. 88.118.8"
        )
    return None


def suffix_problem(suffix: str) -> str | None:
    """Why ``suffix`` is not a well-formed suffix, or None if it is."""
    if not suffix:
        return "suffix must not be empty"
    if suffix[0] == " " or suffix[-1] == " ":
        return "suffix must not begin or end with white space"
    if not suffix.isprintable():
        bad = next(ch for ch in suffix if not ch.isprintable())
        return f"suffix contains a non-printable character U+{ord(bad):04X}"
    return None


def segment_problem(segment: str) -> str | None:
    """Why ``segment`` is not a well-formed prefix segment (an enterprise code), or None."""
    if not _SEGMENT.fullmatch(segment):
        return f"must be 1 to {limits.SEGMENT_MAX_CHARS} ASCII letters or digits"
    return None


@dataclass(frozen=True, slots=True)
class Identifier:
    """A well-formed identifier. Build it with :func:`parse`; equality is exact spelling, use
    ``key`` to compare under the case rule."""

    prefix: str
    suffix: str

    @property
    def text(self) -> str:
        return f"{self.prefix}/{self.suffix}"

    @property
    def key(self) -> bytes:
        """Storage key: the case-folded UTF-8 identifier."""
        return fold(self.text)

    def is_under(self, prefix: str) -> bool:
        """Whether this identifier's prefix is ``prefix`` or a sub-prefix of it (ASCII case-insensitive)."""
        mine, theirs = self.prefix.upper(), prefix.upper()
        return mine == theirs or mine.startswith(theirs + ".")

    def __str__(self) -> str:
        return self.text


def parse(text: str, field: str = "identifier") -> Identifier:
    """Parse ``text`` as an identifier or raise :class:`InvalidArgument` naming ``field``."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument.single(field, "must not be empty")
    end = prefix_length(text)
    if end:
        return Identifier(text[:end], text[end + 1 :])
    # Not well-formed: find the first rule it breaks, for the message.
    if len(text) > limits.IDENTIFIER_MAX_CHARS:
        raise InvalidArgument.single(field, f"must be at most {limits.IDENTIFIER_MAX_CHARS} characters")
    prefix, slash, suffix = text.partition("/")
    if not slash:
        raise InvalidArgument.single(field, "must have the form PREFIX/SUFFIX, e.g. 88.118.8/ABC-0001")
    problem = prefix_problem(prefix)
    if problem:
        raise InvalidArgument.single(field, f"prefix {problem}")
    problem = suffix_problem(suffix)
    if problem:
        raise InvalidArgument.single(field, problem)
    raise AssertionError(f"prefix_length and the problem functions disagree on {text!r}")


def parse_prefix(text: str, field: str = "prefix") -> str:
    """Validate a prefix and return it unchanged, or raise :class:`InvalidArgument` naming ``field``."""
    problem = prefix_problem(text) if isinstance(text, str) else "must be a string"
    if problem:
        raise InvalidArgument.single(field, problem)
    return text


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """The key range ``[lower, upper)`` holding every identifier under ``prefix`` and its sub-prefixes.

    Keys under ``P`` start with ``P/`` or ``P.``; ``.`` and ``/`` are adjacent bytes (0x2E, 0x2F),
    so one contiguous range holds both, and nothing of a sibling such as ``P0`` falls inside.
    """
    base = fold(prefix)
    return base + b".", base + b"0"
