"""The identifier grammar: parsing, formatting, case folding, prefixes and key ranges."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from registry import limits
from registry.errors import InvalidArgument
from registry.identifier import (
    Identifier,
    fold,
    parse,
    parse_prefix,
    prefix_problem,
    prefix_range,
    segment_problem,
    suffix_problem,
)

PROPS = settings(max_examples=200, deadline=None)

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_upper(text: str) -> str:
    return text.translate(_ASCII_UPPER)


# ---------------------------------------------------------------------------- strategies
segments = st.from_regex(rf"[A-Za-z0-9]{{1,{limits.SEGMENT_MAX_CHARS}}}", fullmatch=True)
prefixes = (
    st.lists(segments, min_size=1, max_size=5)
    .map(".".join)
    .filter(lambda p: len(p) <= limits.PREFIX_MAX_CHARS)
)
# Letters, marks, numbers, punctuation and symbols are exactly the printable categories besides
# the ASCII space; add the space, "/" and "." and some CJK explicitly.
suffix_chars = st.one_of(
    st.characters(categories=["L", "M", "N", "P", "S"], codec="utf-8"),
    st.sampled_from(" /.中文标识解析é"),
)
suffixes = st.text(suffix_chars, min_size=1, max_size=80).filter(lambda s: s[0] != " " and s[-1] != " ")


def rejection(text: object, field: str = "identifier") -> str:
    """The single violation's description for a rejected ``text``, checking it names ``field``."""
    with pytest.raises(InvalidArgument) as info:
        parse(text, field)  # type: ignore[arg-type]
    assert len(info.value.violations) == 1
    violation = info.value.violations[0]
    assert violation.field == field
    assert info.value.reason == "INVALID_ARGUMENT"
    return violation.description


# ---------------------------------------------------------------------------- round trip
@PROPS
@given(prefixes, suffixes)
def test_parse_format_round_trip(prefix: str, suffix: str) -> None:
    assume(len(prefix) + 1 + len(suffix) <= limits.IDENTIFIER_MAX_CHARS)
    ident = parse(f"{prefix}/{suffix}")
    assert ident == Identifier(prefix, suffix)
    assert ident.prefix == prefix
    assert ident.suffix == suffix
    assert parse(ident.text) == ident
    assert str(ident) == ident.text == f"{prefix}/{suffix}"
    assert ident.key == fold(ident.text)


@pytest.mark.parametrize(
    ("text", "prefix", "suffix"),
    [
        ("88.118.8/ABC-0001", "88.118.8", "ABC-0001"),
        ("88.118.8/a/b/c", "88.118.8", "a/b/c"),
        ("88.118.8//", "88.118.8", "/"),
        ("88.118.8/.", "88.118.8", "."),
        ("88.118.8/v1.2.3", "88.118.8", "v1.2.3"),
        ("88.118.8/设备/编号.001", "88.118.8", "设备/编号.001"),
        ("88.118.8/a b", "88.118.8", "a b"),
        ("88.118.8.1.ab/x", "88.118.8.1.ab", "x"),
        ("A/😀", "A", "😀"),
        ("88.118.8/é", "88.118.8", "é"),
    ],
)
def test_parse_examples(text: str, prefix: str, suffix: str) -> None:
    ident = parse(text)
    assert (ident.prefix, ident.suffix) == (prefix, suffix)
    assert ident.text == text


def test_parse_splits_at_the_first_slash() -> None:
    assert parse("88.118.8/x/y").prefix == "88.118.8"


def test_identifier_equality_is_exact_spelling_key_is_folded() -> None:
    a, b = parse("88.118.8/abc"), parse("88.118.8/ABC")
    assert a != b
    assert a.key == b.key == b"88.118.8/ABC"


def test_length_limits_are_inclusive() -> None:
    assert parse("a" * 32 + "/x").prefix == "a" * 32
    long_prefix = ".".join(["a" * 32, "b" * 31])
    assert len(long_prefix) == 64
    assert parse(long_prefix + "/x").prefix == long_prefix
    text = "88.118.8/" + "x" * (255 - 9)
    assert len(text) == 255
    assert parse(text).text == text
    # Length is in code points, not bytes: 246 CJK characters are 738 UTF-8 bytes.
    text = "88.118.8/" + "中" * (255 - 9)
    assert parse(text).text == text


# ---------------------------------------------------------------------------- fold
@PROPS
@given(st.text(st.characters(codec="utf-8"), max_size=40))
def test_fold_is_utf8_with_only_ascii_letters_upper_cased(text: str) -> None:
    assert fold(text) == ascii_upper(text).encode("utf-8")


@PROPS
@given(st.text(st.characters(codec="utf-8"), max_size=40), st.data())
def test_fold_equal_under_ascii_case_changes(text: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    other = "".join(
        (ch.swapcase() if flip and ch.isascii() and ch.isalpha() else ch)
        for ch, flip in zip(text, flips, strict=True)
    )
    assert fold(text) == fold(other)


@PROPS
@given(st.text(st.characters(codec="utf-8"), max_size=20), st.text(st.characters(codec="utf-8"), max_size=20))
@example("é", "É")
@example("abc", "ABC")
@example("ß", "SS")
@example("k", "\u212a")  # KELVIN SIGN
@example("i", "\u0130")  # LATIN CAPITAL LETTER I WITH DOT ABOVE
@example("\u0131", "I")  # LATIN SMALL LETTER DOTLESS I
@example("ǆ", "ǅ")
def test_fold_equal_iff_strings_differ_only_in_ascii_case(x: str, y: str) -> None:
    assert (fold(x) == fold(y)) == (ascii_upper(x) == ascii_upper(y))


@pytest.mark.parametrize(
    ("x", "y"),
    [("é", "É"), ("ß", "SS"), ("k", "\u212a"), ("\u0131", "I"), ("ｆ", "Ｆ"), ("ω", "Ω"), ("ǆ", "Ǆ")],
)
def test_non_ascii_case_does_not_fold(x: str, y: str) -> None:
    assert fold(x) != fold(y)
    assert parse(f"88.118.8/{x}").key != parse(f"88.118.8/{y}").key


def test_fold_examples() -> None:
    assert fold("88.118.8/abc-Éé") == "88.118.8/ABC-Éé".encode()
    assert fold("88.118.8/中文") == "88.118.8/中文".encode()
    assert fold("") == b""


# ---------------------------------------------------------------------------- rejections
FORM = "must have the form PREFIX/SUFFIX"
PREFIX_SHAPE = "prefix must be dot-separated segments of 1 to 32 ASCII letters or digits"


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("", "must not be empty"),
        ("88.118.8", FORM),
        ("88.118.8ABC", FORM),
        ("/abc", "prefix must not be empty"),
        ("88.118_8/x", PREFIX_SHAPE),
        ("88..118/x", PREFIX_SHAPE),
        (".88/x", PREFIX_SHAPE),
        ("88./x", PREFIX_SHAPE),
        ("88.118.8 /x", PREFIX_SHAPE),
        (" 88.118.8/x", PREFIX_SHAPE),
        ("88.118.é/x", PREFIX_SHAPE),
        ("８８.118/x", PREFIX_SHAPE),  # fullwidth digits are not ASCII digits
        ("88.118-8/x", PREFIX_SHAPE),
        ("88.118.8\n/x", PREFIX_SHAPE),
        ("a" * 33 + "/x", PREFIX_SHAPE),
        ("88." + "a" * 33 + "/x", PREFIX_SHAPE),
        (".".join(["a" * 32, "b" * 32]) + "/x", "prefix must be at most 64 characters"),
        (".".join(["a"] * 33) + "/x", "prefix must be at most 64 characters"),
        ("88.118.8/", "suffix must not be empty"),
        ("88.118.8/ x", "suffix must not begin or end with white space"),
        ("88.118.8/x ", "suffix must not begin or end with white space"),
        ("88.118.8/ ", "suffix must not begin or end with white space"),
        ("88.118.8/a\x00b", "suffix contains a non-printable character U+0000"),
        ("88.118.8/a\x1f", "suffix contains a non-printable character U+001F"),
        ("88.118.8/\x7f", "suffix contains a non-printable character U+007F"),
        ("88.118.8/a\tb", "suffix contains a non-printable character U+0009"),
        ("88.118.8/a\nb", "suffix contains a non-printable character U+000A"),
        ("88.118.8/a\u200bb", "suffix contains a non-printable character U+200B"),
        ("88.118.8/a\u2028b", "suffix contains a non-printable character U+2028"),
        ("88.118.8/a\u2029b", "suffix contains a non-printable character U+2029"),
        ("88.118.8/a\u00a0b", "suffix contains a non-printable character U+00A0"),
        ("88.118.8/a\u3000b", "suffix contains a non-printable character U+3000"),
        ("88.118.8/\ufeffx", "suffix contains a non-printable character U+FEFF"),
        ("88.118.8/a\ue000", "suffix contains a non-printable character U+E000"),
        ("88.118.8/a\ud800", "suffix contains a non-printable character U+D800"),
        ("88.118.8/a\U000e0001", "suffix contains a non-printable character U+E0001"),
        ("88.118.8/" + "x" * 247, "must be at most 255 characters"),
        ("88.118.8/" + "中" * 247, "must be at most 255 characters"),
    ],
)
@pytest.mark.parametrize("field", ["identifier", "record.identifier", "requests[3].record.identifier"])
def test_rejections_name_the_field_and_the_problem(text: str, description: str, field: str) -> None:
    got = rejection(text, field)
    assert got.startswith(description), got


def test_rejection_of_a_non_string() -> None:
    assert rejection(None) == "must not be empty"


def test_whole_length_checked_before_parts() -> None:
    # Far too long with a bad prefix too: the length is what is reported.
    assert rejection("!" * 300 + "/x") == "must be at most 255 characters"


@PROPS
@given(
    prefixes, suffixes, st.sampled_from("\x00\x01\x1f\x7f\x85\u200b\u200e\u2028\u2029\u00a0\ufeff\U000e007f")
)
def test_any_non_printable_character_in_the_suffix_is_rejected(prefix: str, suffix: str, bad: str) -> None:
    text = f"{prefix}/{suffix[: len(suffix) // 2]}{bad}{suffix[len(suffix) // 2 :]}"
    assume(len(text) <= limits.IDENTIFIER_MAX_CHARS)
    assert rejection(text, "x") == f"suffix contains a non-printable character U+{ord(bad):04X}"


def test_problem_helpers() -> None:
    assert prefix_problem("88.118.8") is None
    assert prefix_problem("") == "must not be empty"
    assert suffix_problem("a/b.c") is None
    assert suffix_problem("") == "suffix must not be empty"
    assert segment_problem("8") is None
    assert segment_problem("abcXYZ019") is None
    assert segment_problem("a.b") is not None
    assert segment_problem("") is not None
    assert segment_problem("a" * 33) == "must be 1 to 32 ASCII letters or digits"


@pytest.mark.parametrize("good", ["88", "88.118", "88.118.8", "a.B.c", "a" * 32])
def test_parse_prefix_accepts(good: str) -> None:
    assert parse_prefix(good) == good


@pytest.mark.parametrize("bad", ["", "88.", ".88", "88..118", "88/118", "88.118.8/x", "a" * 33, "é"])
def test_parse_prefix_rejects_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_prefix(bad, "parent")
    assert [v.field for v in info.value.violations] == ["parent"]


def test_parse_prefix_rejects_non_string() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_prefix(88, "parent")  # type: ignore[arg-type]
    assert info.value.violations[0].field == "parent"


# ---------------------------------------------------------------------------- prefixes
@pytest.mark.parametrize(
    ("ident", "prefix", "under"),
    [
        ("88.118.8/x", "88.118.8", True),
        ("88.118.8.1/x", "88.118.8", True),
        ("88.118.8.1.2/x", "88.118.8", True),
        ("88.118.8/x", "88.118", True),
        ("88.118.8/x", "88", True),
        ("AB.cd/x", "ab.CD", True),
        ("ab.cd.EF/x", "AB", True),
        ("88.118.80/x", "88.118.8", False),
        ("88.118.8a/x", "88.118.8", False),
        ("88.118.9/x", "88.118.8", False),
        ("88.118/x", "88.118.8", False),
        ("88.118.8/x", "88.118.8.1", False),
        ("88.118.8/1.x", "88.118.8.1", False),  # a "." in the suffix is not a sub-prefix
        ("88.118.8/x", "8", False),
        ("88.118.8/x", "118.8", False),
    ],
)
def test_is_under(ident: str, prefix: str, under: bool) -> None:
    assert parse(ident).is_under(prefix) is under


def _in_range(key: bytes, bounds: tuple[bytes, bytes]) -> bool:
    return bounds[0] <= key < bounds[1]


def test_prefix_range_examples() -> None:
    bounds = prefix_range("88.118.8")
    inside = ["88.118.8/x", "88.118.8/", "88.118.8.1/x", "88.118.8.ABC.2/x", "88.118.8/\xff", "88.118.8/~~~"]
    outside = [
        "88.118.80/x",
        "88.118.8a/x",
        "88.118.8A/x",
        "88.118.9/x",
        "88.118.7/x",
        "88.118/x",
        "88.118.8",
    ]
    for text in inside:
        assert _in_range(fold(text), bounds), text
    for text in outside:
        assert not _in_range(fold(text), bounds), text


def test_prefix_range_is_case_insensitive() -> None:
    assert prefix_range("ab.cd") == prefix_range("AB.cd") == prefix_range("AB.CD")
    assert _in_range(parse("aB.Cd/x").key, prefix_range("ab.CD"))


@PROPS
@given(prefixes, st.data())
def test_prefix_range_holds_exactly_the_identifiers_under_the_prefix(
    prefix: str, data: st.DataObject
) -> None:
    """A key is in prefix_range(P) iff its identifier is P itself or a sub-prefix of P."""
    relation = data.draw(st.sampled_from(["same", "sub", "sibling", "parent", "other", "case"]))
    if relation == "same":
        other = prefix
    elif relation == "sub":
        other = prefix + "." + ".".join(data.draw(st.lists(segments, min_size=1, max_size=3)))
    elif relation == "sibling":
        other = prefix + data.draw(segments)  # e.g. P0 or Pa: same string start, another prefix
    elif relation == "parent":
        parts = prefix.split(".")
        assume(len(parts) > 1)
        other = ".".join(parts[: data.draw(st.integers(1, len(parts) - 1))])
    elif relation == "case":
        other = prefix.swapcase()
    else:
        other = data.draw(prefixes)
    assume(prefix_problem(other) is None)  # e.g. a sibling whose last segment grew past 32
    suffix = data.draw(suffixes)
    assume(len(other) + 1 + len(suffix) <= limits.IDENTIFIER_MAX_CHARS)
    ident = parse(f"{other}/{suffix}")
    assert _in_range(ident.key, prefix_range(prefix)) == ident.is_under(prefix)
    if relation in ("same", "sub", "case"):
        assert ident.is_under(prefix)
    if relation in ("sibling", "parent"):
        assert not ident.is_under(prefix)
