"""Helpers shared by the bulk import/export tests (real RocksDB nodes in tmp_path)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

from registry import codec
from registry.model import Principal, Record
from registry.rocks import RocksStore
from registry.service import COUNT_TOTAL, Registry, count_key, init_node
from registry.store import Table

ROOT = Path(__file__).resolve().parent.parent


def make_node(path: Path, enterprises: tuple[str, ...] = ("8", "9")) -> Path:
    """A stopped node's RocksDB directory: prefix 88.118 and the given enterprise codes."""
    with RocksStore(path) as store:
        init_node(store, "88.118")
        registry = Registry(store)
        for code in enterprises:
            registry.create_enterprise(Principal.admin(), code, "Demo", "ops@example.com", lambda p: "fp")
    return path


def rejects(path: Path) -> list[dict[str, str]]:
    """The rows of a reject file."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def raw_records(db: Path) -> dict[bytes, bytes]:
    with RocksStore(db) as store:
        return dict(store.scan(Table.RECORDS, b"", b"\xff" * 8, 1 << 40))


def records(db: Path) -> dict[str, Record]:
    return {codec.decode_record(v).identifier: codec.decode_record(v) for v in raw_records(db).values()}


def content(db: Path) -> dict[str, tuple[str, tuple[tuple[int, str, str | bytes, int], ...]]]:
    """identifier -> (owner, values without timestamps): what an import decides, not when."""
    return {
        ident: (r.owner, tuple((v.index, v.type, v.data, v.ttl) for v in r.values))
        for ident, r in records(db).items()
    }


def counters(db: Path) -> dict[bytes, int]:
    with RocksStore(db) as store:
        return store.counters(b"ids:")


def assert_counts_match(db: Path) -> None:
    """The counters equal what a scan of the records says, per owner and in total."""
    recs = records(db)
    expected: dict[bytes, int] = {COUNT_TOTAL: len(recs)}
    for r in recs.values():
        expected[count_key(r.owner)] = expected.get(count_key(r.owner), 0) + 1
    got = {k: v for k, v in counters(db).items() if v}
    assert got == expected


def gen_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_data", ROOT / "bench" / "gen_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
