"""Bulk import: rows checked against templates (the owner's requirement or ``template=``), and one
audit entry per committed chunk in the same atomic write."""

from __future__ import annotations

from pathlib import Path

from registry.bulk import run_import
from registry.model import Principal, Value
from registry.rocks import RocksStore
from registry.service import Registry
from registry.templates import DataType, Template, TemplateField
from tests.bulk_support import assert_counts_match, make_node, records, rejects

PRODUCT = Template(
    name="gs1.product",
    version="1",
    display_name="Product",
    fields=(
        TemplateField("product.gtin", 2, DataType.GTIN, required=True, display_name="GTIN"),
        TemplateField("product.batch", 3, DataType.STRING, required=True, max_length=20),
    ),
)
HEADER = "identifier,URL,2:product.gtin,3:product.batch\n"


def node_with_template(tmp_path: Path, require: bool) -> Path:
    db = make_node(tmp_path / "db")
    with RocksStore(db) as store:
        registry = Registry(store)
        registry.templates.create(Principal.admin(), PRODUCT)
        if require:
            registry.update_enterprise(Principal.admin(), "88.118.8", require_template=True)
    return db


def test_an_enterprise_requiring_a_template_rejects_rows_without_one(tmp_path: Path) -> None:
    db = node_with_template(tmp_path, require=True)
    src = tmp_path / "in.csv"
    src.write_text(HEADER + "88.118.8/A,https://a,4006381333931,B1\n88.118.9/B,https://b,,\n")
    summary = run_import(db, src, workers=0)
    assert (summary.imported, summary.rejected) == (1, 1)
    (bad,) = rejects(Path(summary.reject_path))
    assert bad["identifier"] == "88.118.8/A"
    assert bad["reason"] == "INVALID_ARGUMENT"
    assert bad["message"].startswith("template: enterprise 88.118.8 registers identifiers against a template")
    assert set(records(db)) == {"88.118.9/B"}


def test_template_flag_checks_every_row_and_names_the_field(tmp_path: Path) -> None:
    db = node_with_template(tmp_path, require=True)
    src = tmp_path / "in.csv"
    src.write_text(
        HEADER
        + "88.118.8/A,https://a,4006381333931,B1\n"  # good
        + "88.118.8/B,https://b,4006381333932,B2\n"  # bad GTIN check digit
        + "88.118.9/C,https://c,4006381333931,\n"  # required batch missing
    )
    summary = run_import(db, src, workers=0, template="gs1.product@1")
    assert (summary.imported, summary.rejected) == (1, 2)
    bad = {r["identifier"]: r for r in rejects(Path(summary.reject_path))}
    assert "values[1]" in bad["88.118.8/B"]["message"] and "check digit" in bad["88.118.8/B"]["message"]
    assert "product.batch" in bad["88.118.9/C"]["message"]
    (stored,) = records(db).values()
    assert stored.identifier == "88.118.8/A" and stored.template == "gs1.product@1"
    assert_counts_match(db)


def test_each_committed_chunk_writes_one_audit_entry(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    src = tmp_path / "in.csv"
    rows = "".join(f"88.118.8/N{i:05d},https://x/{i},,\n" for i in range(3000))
    src.write_text(HEADER + rows + "bad row,x,,\n")
    summary = run_import(db, src, workers=0, chunk_bytes=40_000)
    assert (summary.imported, summary.rejected) == (3000, 1)
    with RocksStore(db) as store:
        registry = Registry(store)
        entries, _ = registry.audit.list(Principal.admin(), size=1000)
        assert registry.audit.verify().ok  # the hash chain holds across the import's entries
    batches = [e for e in entries if e.operation == "IMPORT_BATCH"]
    assert len(batches) > 1
    assert sum(int(e.detail["imported"]) for e in batches) == 3000
    assert sum(int(e.detail["rejected"]) for e in batches) == 1
    assert sum(int(e.detail["rows"]) for e in batches) == 3001
    assert all(e.detail["source"] == str(src) and e.actor_role == "admin" for e in batches)


def test_a_record_registered_against_a_template_exports_and_imports_with_it(tmp_path: Path) -> None:
    """JSON Lines carries a record's template: into an empty node that requires templates (the
    template published there), the export imports as the same records, byte for byte, offline
    and through a running node's API alike; a row naming a template the node lacks is rejected,
    and a row's own template wins over ``template=``."""
    from registry.bulk import run_export
    from tests.bulk_support import raw_records

    src = node_with_template(tmp_path / "src", require=True)
    with RocksStore(src) as store:
        registry = Registry(store)
        admin = Principal.admin()
        for n in range(3):
            registry.create(
                admin,
                f"88.118.8/T{n}",
                [Value(2, "product.gtin", "4006381333931"), Value(3, "product.batch", f"B{n}")],
                template="gs1.product@1",
            )
        registry.create(admin, "88.118.9/plain", [Value(1, "URL", "https://plain")])
    exported = tmp_path / "all.jsonl"
    assert run_export(src, exported).records == 4
    assert exported.read_text().count('"template":"gs1.product@1"') == 3

    copy = node_with_template(tmp_path / "copy", require=True)
    summary = run_import(copy, exported, workers=0, restore=True)
    assert (summary.imported, summary.rejected) == (4, 0)
    assert raw_records(copy) == raw_records(src)

    # Rows naming a template: the node must have it; the row's own wins over the import's.
    other = exported.read_text().replace("gs1.product@1", "gs1.product@9", 1)
    (tmp_path / "other.jsonl").write_text(other)
    bare = node_with_template(tmp_path / "bare", require=False)
    summary = run_import(bare, tmp_path / "other.jsonl", workers=0, template="gs1.product@1")
    assert (summary.imported, summary.rejected) == (2, 2)
    bad = {r["identifier"]: r["message"] for r in rejects(Path(summary.reject_path))}
    assert "gs1.product@9" in bad["88.118.8/T0"]
    assert "product.gtin" in bad["88.118.9/plain"]  # a row naming none is checked against the import's
    assert {r.identifier: r.template for r in records(bare).values()} == {
        "88.118.8/T1": "gs1.product@1",
        "88.118.8/T2": "gs1.product@1",
    }
