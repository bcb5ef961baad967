"""Industry data templates: the data-type parsers (property-based), field checks, template
definitions, versioning, and registration against templates in the core and over gRPC."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from registry.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from registry.model import Principal, Value
from registry.pb import admin_pb2
from registry.rocks import RocksStore
from registry.service import Registry, init_node
from registry.templates import (
    DataType,
    Template,
    TemplateField,
    TemplateState,
    check_against_template,
    decode_template,
    encode_template,
    gtin_check_digit,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_gtin,
    parse_integer,
    parse_template_ref,
    parse_url,
    template_from_dict,
    template_to_dict,
    template_violations,
)
from resolver.cli import cli
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.node_fixtures import MakeEnterprise, assert_invalid, fields, management_target, rpc_error

ADMIN = Principal.admin("f" * 64)

# ---------------------------------------------------------------- parsers, property-based


@given(
    st.sampled_from([7, 11, 12, 13]).flatmap(lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n))
)
def test_gtin_with_its_check_digit_parses_and_any_other_last_digit_fails(body: str) -> None:
    check = gtin_check_digit(body)
    assert parse_gtin(body + str(check)) == body + str(check)
    for wrong in set(range(10)) - {check}:
        with pytest.raises(ValueError, match=f"check digit should be {check}"):
            parse_gtin(body + str(wrong))


def test_gtin_known_codes_and_lengths() -> None:
    assert parse_gtin("4006381333931")  # EAN-13 on a Stabilo pen
    assert parse_gtin("036000291452")  # UPC-A
    assert parse_gtin("96385074")  # GTIN-8
    assert parse_gtin("10614141000415")  # GTIN-14
    for bad in ("4006381333932", "400638133393", "123456789", "40063813339３1", "4006381333931 ", ""):
        with pytest.raises(ValueError):
            parse_gtin(bad)


@given(st.text(max_size=40))
def test_every_parser_is_total_it_returns_or_raises_value_error(text: str) -> None:
    for parse in (parse_integer, parse_decimal, parse_date, parse_datetime, parse_url, parse_gtin):
        try:
            parse(text)
        except ValueError as exc:
            assert str(exc)


@given(st.integers(min_value=-(10**39), max_value=10**39))
def test_integer_round_trips(n: int) -> None:
    assert parse_integer(str(n)) == n
    assert parse_integer(f"+{n}" if n >= 0 else str(n)) == n


@pytest.mark.parametrize("text", ["1_000", " 1", "1 ", "1e3", "0x10", "١٢", "", "+", "1.0"])
def test_integer_rejects_what_python_int_would_accept_or_is_not_an_integer(text: str) -> None:
    with pytest.raises(ValueError):
        parse_integer(text)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12))
def test_decimal_round_trips(d: Decimal) -> None:
    assert parse_decimal(format(d, "f")) == d


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1e5", ".5", "5.", "1,5", "--1", "1.2.3", " 1.5"])
def test_decimal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)


@given(st.dates())
def test_date_round_trips(d: dt.date) -> None:
    assert parse_date(d.isoformat()) == d


@pytest.mark.parametrize(
    "text", ["2026-02-30", "2026-13-01", "20260101", "2026-1-01", "2026-01-01T00:00", "０２"]
)
def test_date_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)


@given(st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=offsets))
def test_datetime_round_trips_with_any_offset(moment: dt.datetime) -> None:
    text = moment.isoformat(timespec="microseconds")
    assert parse_datetime(text) == moment
    utc = moment.astimezone(dt.UTC)
    assert parse_datetime(f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.%f") + "Z") == moment


@pytest.mark.parametrize(
    "text",
    ["2026-01-31T08:00:00", "2026-01-31 08:00:00Z", "2026-01-31T24:00:00Z", "2026-01-31T08:00:60Z",
     "2026-02-30T08:00:00Z", "2026-01-31T08:00:00+24:00", "2026-01-31"],
)  # fmt: skip
def test_datetime_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_datetime_keeps_microseconds_and_truncates_nanoseconds() -> None:
    assert parse_datetime("2026-01-31T08:00:00.123456789Z").microsecond == 123456


@pytest.mark.parametrize(
    "text", ["https://acme.example/p/1", "http://127.0.0.1:8080/x?q=1#f", "HTTPS://A.EXAMPLE"]
)
def test_url_accepts(text: str) -> None:
    assert parse_url(text) == text


@pytest.mark.parametrize(
    "text", ["ftp://x.example", "https://", "acme.example", "https://a b", "https://x:99999", ""]
)
def test_url_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_url(text)


# ---------------------------------------------------------------- field checks


def _field(**kw: object) -> TemplateField:
    settings: dict[str, object] = {"type": "x", "index": 1}
    settings.update(kw)
    return TemplateField(**settings)  # type: ignore[arg-type]


def _problems(f: TemplateField, data: str | bytes) -> list[str]:
    return f.problems(Value(f.index, f.type, data))


@given(st.integers(min_value=-1000, max_value=1000))
def test_integer_range_bounds_are_inclusive(n: int) -> None:
    f = _field(data_type=DataType.INTEGER, minimum="-10", maximum="10")
    assert (_problems(f, str(n)) == []) == (-10 <= n <= 10)


@given(st.text(alphabet="ab", max_size=12))
def test_length_bounds(text: str) -> None:
    f = _field(min_length=2, max_length=8)
    assert (_problems(f, text) == []) == (2 <= len(text) <= 8)


@given(st.from_regex(r"B[0-9]{4}", fullmatch=True) | st.text(max_size=6))
def test_pattern_must_match_the_whole_text(text: str) -> None:
    f = _field(pattern=r"B[0-9]{4}")
    assert (_problems(f, text) == []) == bool(re.fullmatch(r"B[0-9]{4}", text))


def test_decimal_date_and_datetime_ranges() -> None:
    price = _field(data_type=DataType.DECIMAL, minimum="0", maximum="999.99")
    assert _problems(price, "12.50") == []
    assert _problems(price, "1000") == ["must be at most 999.99"]
    assert _problems(price, "-0.01") == ["must be at least 0"]
    made = _field(data_type=DataType.DATE, minimum="2020-01-01", maximum="2030-12-31")
    assert _problems(made, "2026-06-01") == []
    assert _problems(made, "2019-12-31") == ["must be at least 2020-01-01"]
    at = _field(data_type=DataType.DATETIME, minimum="2026-01-01T00:00:00Z")
    assert _problems(at, "2026-01-01T08:00:00+08:00") == []  # the same instant as the bound
    assert _problems(at, "2026-01-01T07:59:59+08:00") == ["must be at least 2026-01-01T00:00:00Z"]


def test_enumeration_binary_and_several_problems_at_once() -> None:
    grade = _field(data_type=DataType.ENUMERATION, enum_values=("A", "B"))
    assert _problems(grade, "A") == []
    assert _problems(grade, "C") == ["must be one of A, B"]
    assert _problems(grade, b"A") == ["must be text, not binary data"]
    gtin = _field(data_type=DataType.GTIN, max_length=8, pattern="4.*")
    assert len(_problems(gtin, "036000291453")) == 3  # too long, bad check digit, pattern


# ---------------------------------------------------------------- templates

PRODUCT = Template(
    name="gs1.product",
    version="1",
    display_name="Product",
    fields=(
        TemplateField("product.gtin", 2, DataType.GTIN, required=True, display_name="GTIN"),
        TemplateField(
            "product.batch", 3, DataType.STRING, required=True, max_length=20, pattern="[A-Z0-9-]+"
        ),
        TemplateField("product.made", 4, DataType.DATE, minimum="2000-01-01"),
        TemplateField("product.weight", 5, DataType.DECIMAL, minimum="0"),
        TemplateField("product.grade", 6, DataType.ENUMERATION, enum_values=("A", "B")),
    ),
)


def test_check_against_template_reports_every_violation_naming_the_field() -> None:
    values = [
        Value(1, "URL", "https://acme.example/p/1"),  # not in the template: allowed
        Value(2, "product.gtin", "4006381333932"),
        Value(4, "product.made", "1999-12-31"),
        Value(5, "product.wrong", "1"),
        Value(6, "product.grade", "C"),
    ]
    found = check_against_template(values, PRODUCT)
    by_field = {(v.field, v.description.split(":")[0]) for v in found}
    assert ("values[1].data", "product.gtin (index 2 of template gs1.product@1)") in by_field
    assert ("values[2].data", "product.made (index 4 of template gs1.product@1)") in by_field
    assert any(v.field == "values[3].type" and "must be product.weight" in v.description for v in found)
    assert any(v.field == "values[4].data" and "one of A, B" in v.description for v in found)
    assert any(v.field == "values" and "product.batch" in v.description for v in found)
    assert len(found) == 5
    ok = [Value(2, "product.gtin", "4006381333931"), Value(3, "product.batch", "B-7")]
    assert check_against_template(ok, PRODUCT) == []


def test_template_definition_violations() -> None:
    bad = Template(
        name="bad name",
        version="",
        fields=(
            TemplateField("a", 1, DataType.INTEGER, minimum="5", maximum="1"),
            TemplateField("a", 1, DataType.STRING, minimum="1", pattern="(", min_length=5, max_length=2),
            TemplateField("c", 3, DataType.ENUMERATION),
            TemplateField("d", 4, DataType.DATE, maximum="2026-02-30"),
        ),
    )
    paths = {v.field for v in template_violations(bad)}
    assert {
        "name",
        "version",
        "fields[0].maximum",
        "fields[1].type",
        "fields[1].index",
        "fields[1].minimum",
        "fields[1].pattern",
        "fields[1].max_length",
        "fields[2].enum_values",
        "fields[3].maximum",
    } <= paths
    assert template_violations(PRODUCT) == []


def test_json_form_round_trips_and_rejects_unknown_or_mistyped_keys() -> None:
    assert decode_template(encode_template(PRODUCT)) == PRODUCT
    doc = template_to_dict(PRODUCT)
    assert template_from_dict(doc) == PRODUCT
    with pytest.raises(InvalidArgument) as info:
        template_from_dict(
            {"name": "x", "version": 1, "colour": "red", "fields": [{"index": "2", "data_type": "blob"}]}
        )
    assert {v.field for v in info.value.violations} == {"colour", "fields[0].index", "fields[0].data_type"}
    assert template_from_dict({"name": "x", "version": 2, "fields": []}).version == "2"


def test_template_references() -> None:
    assert parse_template_ref("gs1.product@1") == ("gs1.product", "1")
    for bad in ("gs1.product", "@1", "a@", "a b@1", "a@1@2"):
        with pytest.raises(InvalidArgument):
            parse_template_ref(bad)


# ---------------------------------------------------------------- the core: versioning, registration


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    store = RocksStore(tmp_path / "db", fsync=False, block_cache_bytes=8 << 20)
    init_node(store, "88.118")
    yield Registry(store)
    store.close()


def _enterprise(registry: Registry, code: str = "8", require_template: bool = False) -> Principal:
    e = registry.create_enterprise(ADMIN, code, "Acme", "", lambda prefix: "e" * 64)
    if require_template:
        registry.update_enterprise(ADMIN, e.prefix, require_template=True)
    return Principal.enterprise(e.prefix, "e" * 64)


GOOD = [Value(2, "product.gtin", "4006381333931"), Value(3, "product.batch", "B-7")]


def test_versions_are_immutable_and_a_new_version_is_a_new_object(registry: Registry) -> None:
    v1 = registry.templates.create(ADMIN, PRODUCT)
    assert v1.state is TemplateState.ACTIVE and v1.create_time_ns > 0
    with pytest.raises(AlreadyExists):
        registry.templates.create(ADMIN, PRODUCT)
    with pytest.raises(AlreadyExists):  # the name is ASCII case-insensitive
        registry.templates.create(ADMIN, Template("GS1.PRODUCT", "1", PRODUCT.fields))
    relaxed = tuple(f if f.index != 3 else TemplateField("product.batch", 3) for f in PRODUCT.fields)
    v2 = registry.templates.create(ADMIN, Template("gs1.product", "2", relaxed))
    assert registry.templates.get("gs1.product@1").fields == PRODUCT.fields
    assert registry.templates.get("GS1.Product@2").fields == v2.fields
    page, token = registry.templates.list(name="gs1.product")
    assert [t.ref for t in page] == ["gs1.product@1", "gs1.product@2"] and token == ""
    first, token = registry.templates.list(1)
    rest, last = registry.templates.list(1, token)
    assert [first[0].version, rest[0].version] == ["1", "2"] and last == ""
    with pytest.raises(NotFound):
        registry.templates.get("gs1.product@3")
    with pytest.raises(PermissionDenied):
        registry.templates.create(Principal.enterprise("88.118.8"), Template("x", "1", PRODUCT.fields))


def test_registration_against_a_template_and_deprecation(registry: Registry) -> None:
    acme = _enterprise(registry)
    registry.templates.create(ADMIN, PRODUCT)
    record = registry.create(acme, "88.118.8/P-1", GOOD, template="gs1.product@1")
    assert record.template == "gs1.product@1"
    with pytest.raises(InvalidArgument) as info:
        registry.create(acme, "88.118.8/P-2", [Value(2, "product.gtin", "123")], template="gs1.product@1")
    assert {v.field for v in info.value.violations} == {"record.values[0].data", "record.values"}
    with pytest.raises(InvalidArgument) as info:
        registry.create(acme, "88.118.8/P-2", GOOD, template="gs1.product@9")
    assert [v.field for v in info.value.violations] == ["record.template"]

    registry.templates.deprecate(ADMIN, "gs1.product@1")
    assert registry.templates.get("gs1.product@1").state is TemplateState.DEPRECATED
    with pytest.raises(InvalidArgument, match="deprecated"):
        registry.create(acme, "88.118.8/P-3", GOOD, template="gs1.product@1")
    # A record already on the deprecated version stays on it, and is still checked against it.
    updated = registry.update(acme, "88.118.8/P-1", [*GOOD, Value(6, "product.grade", "A")])
    assert updated.template == "gs1.product@1"
    with pytest.raises(InvalidArgument):
        registry.update(acme, "88.118.8/P-1", GOOD[:1])
    assert [t.ref for t in registry.templates.list(include_deprecated=False)[0]] == []


def test_enterprise_policy_requires_a_template(registry: Registry) -> None:
    acme = _enterprise(registry, require_template=True)
    registry.templates.create(ADMIN, PRODUCT)
    with pytest.raises(InvalidArgument) as info:
        registry.create(acme, "88.118.8/P-1", [Value(1, "URL", "https://acme.example"), Value(0, "", "")])
    paths = {v.field for v in info.value.violations}
    assert "record.template" in paths and "record.values[1].index" in paths  # every problem at once
    outcomes = registry.batch_create(
        acme, [("88.118.8/P-1", GOOD), ("88.118.8/P-2", GOOD)], templates=["gs1.product@1"]
    )
    assert outcomes[0].error is None
    assert isinstance(outcomes[1].error, InvalidArgument)
    assert outcomes[1].error.violations[0].field == "requests[1].record.template"


# ---------------------------------------------------------------- over gRPC


def _product_pb() -> admin_pb2.Template:
    pb = admin_pb2.Template(name="gs1.product", version="1", display_name="Product")
    pb.fields.add(type="product.gtin", index=2, data_type=admin_pb2.TemplateField.GTIN, required=True,
                  display_name="GTIN")  # fmt: skip
    pb.fields.add(type="product.made", index=4, data_type=admin_pb2.TemplateField.DATE, minimum="2000-01-01")
    return pb


def test_grpc_templates_end_to_end(
    admin_client: IdnodeClient, anon_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    created = admin_client.create_template(_product_pb())
    assert created.state == admin_pb2.Template.ACTIVE
    err = rpc_error(lambda: admin_client.create_template(_product_pb()))
    assert err.code is grpc.StatusCode.ALREADY_EXISTS
    bad = _product_pb()
    bad.version = "2"
    bad.fields[1].minimum = "yesterday"
    assert_invalid(rpc_error(lambda: admin_client.create_template(bad)), "fields[1].minimum")

    prefix, acme = make_enterprise("8")
    admin_client.update_enterprise(prefix, require_template=True)
    assert admin_client.get_enterprise(prefix).require_template
    err = rpc_error(lambda: acme.create(f"{prefix}/P-1", [value(1, "URL", "https://acme.example")]))
    assert_invalid(err, "record.template")
    err = rpc_error(
        lambda: acme.create(
            f"{prefix}/P-1",
            [value(2, "product.gtin", "4006381333932"), value(4, "product.made", "1999-01-01")],
            template="gs1.product@1",
        )
    )
    assert set(fields(err)) == {"record.values[0].data", "record.values[1].data"}
    assert any("check digit should be 1" in d for _, d in err.violations)
    acme.create(f"{prefix}/P-1", [value(2, "product.gtin", "4006381333931")], template="gs1.product@1")

    # Resolution returns the template with the record; GetTemplate is public.
    resolved = anon_client.resolve(f"{prefix}/p-1")
    assert resolved.template == "gs1.product@1"
    shown = anon_client.get_template(resolved.template)
    assert [(f.index, f.display_name) for f in shown.fields] == [(2, "GTIN"), (4, "")]
    assert rpc_error(lambda: anon_client.get_template("gs1.product@7")).code is grpc.StatusCode.NOT_FOUND
    assert (
        rpc_error(lambda: anon_client.create_template(_product_pb())).code is grpc.StatusCode.UNAUTHENTICATED
    )
    assert rpc_error(lambda: acme.list_templates()).code is grpc.StatusCode.PERMISSION_DENIED

    assert admin_client.deprecate_template("gs1.product@1").state == admin_pb2.Template.DEPRECATED
    assert [t.version for t in admin_client.list_templates().templates] == ["1"]
    assert list(admin_client.list_templates(active_only=True).templates) == []


def test_cli_template_commands_and_enterprise_policy(
    node: NodeServer, node_dir: DataDir, admin_client: IdnodeClient, tmp_path: Path
) -> None:
    definition = tmp_path / "product.toml"
    definition.write_text(
        'name = "gs1.product"\nversion = 1\ndisplay_name = "Product"\n\n'
        '[[fields]]\ntype = "product.gtin"\nindex = 2\ndata_type = "gtin"\nrequired = true\n'
        'display_name = "GTIN"\n'
    )
    base = [
        "--data-dir", str(node_dir.root),
        "--management", management_target(node),
        "--server", f"127.0.0.1:{node.public_port}",
    ]  # fmt: skip

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
        return result.exit_code, result.output

    assert run("template", "add", str(definition)) == (0, "published gs1.product@1 (1 fields)\n")
    code, out = run("template", "add", str(definition))
    assert code != 0 and "ALREADY_EXISTS" in out
    code, out = run("template", "show", "gs1.product@1")
    assert code == 0 and "product.gtin  gtin  required" in out
    code, out = run("template", "list")
    assert code == 0 and out.startswith("gs1.product@1  active  1 fields")
    admin_client.create_enterprise("8")
    code, out = run("enterprise", "update", "88.118.8", "--require-template")
    assert code == 0 and "require_template=yes" in out
    assert run("template", "deprecate", "gs1.product@1") == (0, "gs1.product@1: deprecated\n")
    code, out = run("watch", "--limit", "3", "--json")
    assert code == 0
    assert [json.loads(line)["operation"] for line in out.splitlines()] == [
        "TEMPLATE_CREATE",
        "ENTERPRISE_CREATE",
        "ENTERPRISE_UPDATE",
    ]
