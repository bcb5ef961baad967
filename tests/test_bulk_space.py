"""The disk an offline import needs (registry.bulk.space), told apart from a full disk, and the
pre-flight check through ``idnode import``. Real full disks: tests/test_disk_full.py."""

from __future__ import annotations

import errno
import gzip
import io
import logging
import os
from pathlib import Path

import grpc
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from registry.bulk import Format, run_import
from registry.bulk.space import (
    EXPORT_FIXED_BYTES,
    FIXED_BYTES,
    HEAD_BYTES,
    PEAK_PER_EXPORTED_JSONL_BYTE,
    PEAK_PER_INPUT_BYTE,
    InputSize,
    NotEnoughDisk,
    check_export_space,
    check_free_space,
    estimate_need,
    export_need,
    free_bytes,
    measure_input,
    peak_per_input_byte,
    size_text,
)
from registry.errors import NotFound
from registry.rocks import RocksStore
from registry.service import COUNT_TOTAL, records_under
from registry.store import Add, StoreFull, Txn, is_out_of_space
from resolver.cli import cli
from resolver.datadir import DataDir
from resolver.errors import describe, log_for_operators, status_code_of
from resolver.handle_rest.errors import MethodNotAllowed, error_doc, pair_of
from tests.bulk_support import gen_data, make_node, raw_records


@given(st.floats(0.1, 2.0), st.integers(0, 1 << 50), st.integers(0, 1 << 50), st.integers(0, 1 << 40))
def test_the_estimate_grows_with_the_input_and_counts_what_a_resumed_import_holds(
    per_byte: float, a: int, b: int, held: int
) -> None:
    small, large = sorted((a, b))
    assert estimate_need(small, per_byte).peak <= estimate_need(large, per_byte).peak
    fresh = estimate_need(large, per_byte)
    resumed = estimate_need(large, per_byte, scratch_held=held)
    assert resumed.peak == max(0, fresh.peak - held)
    assert resumed.scratch <= fresh.scratch and resumed.store == fresh.store
    assert fresh.peak >= FIXED_BYTES


def test_the_estimate_is_per_format_and_knows_an_exports_rows() -> None:
    csv_head = b"identifier,URL\n88.118.5/A,https://a\n"
    plain = b'{"identifier": "88.118.5/A", "values": [{"index": 1, "type": "URL", "data": "u"}]}\n'
    exported = (
        b'{"identifier":"88.118.5/A","values":[{"index":1,"type":"URL","data":"u","ttl":86400,'
        b'"timestamp":"2026-11-29T08:53:27.610446171Z"}],"owner":"88.118.5","etag":"e"}\n'
    )
    assert peak_per_input_byte(Format.CSV, csv_head) == PEAK_PER_INPUT_BYTE[Format.CSV]
    assert peak_per_input_byte(Format.JSONL, plain) == PEAK_PER_INPUT_BYTE[Format.JSONL]
    assert peak_per_input_byte(Format.JSONL, exported + plain) == PEAK_PER_EXPORTED_JSONL_BYTE
    assert peak_per_input_byte(Format.JSONL, plain + exported) == PEAK_PER_INPUT_BYTE[Format.JSONL]
    gb = 10**9
    csv = estimate_need(15 * gb, PEAK_PER_INPUT_BYTE[Format.CSV])
    assert csv.peak == int(PEAK_PER_INPUT_BYTE[Format.CSV] * 15 * gb) + FIXED_BYTES
    assert csv.scratch < csv.peak and csv.store < csv.peak < csv.scratch + csv.store


def _generated_csv(tmp_path: Path, rows: int) -> bytes:
    path = tmp_path / "gen.csv"
    gen_data().write(str(path), rows, 2, 7)
    return path.read_bytes()


def test_the_size_of_plain_and_compressed_files(tmp_path: Path) -> None:
    data = _generated_csv(tmp_path, 80_000)  # ~12 MB, more than the 8 MiB sample
    plain = tmp_path / "in.csv"
    plain.write_bytes(data)
    assert measure_input(plain) == InputSize(len(data), data[:HEAD_BYTES])
    for name, pack in (("in.csv.gz", gzip.compress), ("in.csv.zst", zstandard.compress)):
        path = tmp_path / name
        path.write_bytes(pack(data))
        measured = measure_input(path)
        assert measured is not None and measured.head == data[:HEAD_BYTES]
        assert abs(measured.size - len(data)) < 0.1 * len(data), (name, measured.size)
        small = tmp_path / ("small-" + name)
        small.write_bytes(pack(data[:5000]))
        assert measure_input(small) == InputSize(5000, data[:5000])  # read to its end: exact


def test_unknown_sizes_are_not_guessed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert measure_input(empty) is None
    assert measure_input("-") is None
    assert measure_input(io.BytesIO(b"identifier,URL\n")) is None


def test_the_check_names_what_is_needed_and_what_is_free(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    check_free_space(estimate_need(1000, 1.3), tmp_path / "db", tmp_path / "db.bulk", Format.CSV)
    need = estimate_need(free, 1.3)  # 1.3x what is free, and more
    with pytest.raises(NotEnoughDisk) as caught:
        check_free_space(need, tmp_path / "db", tmp_path / "db.bulk", Format.CSV)
    err = caught.value
    assert err.reason == "NOT_ENOUGH_DISK"
    assert int(err.metadata["needed_bytes"]) == need.peak and int(err.metadata["free_bytes"]) > 0
    assert size_text(need.peak) in err.message and "--no-space-check" in err.message


def test_size_text() -> None:
    assert [size_text(n) for n in (0, 999, 1000, 18_400_000_000, 734_000_000, 250 * 10**9)] == [
        "0 B", "999 B", "1.0 kB", "18.4 GB", "734 MB", "250 GB",
    ]  # fmt: skip


def test_full_disks_are_told_apart_from_other_failures() -> None:
    assert is_out_of_space(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert is_out_of_space(OSError(errno.EDQUOT, "quota"))
    assert is_out_of_space(StoreFull("disk full"))
    rocks = Exception("IO error: No space left on device: While appending to file: /d/000004.log")
    assert is_out_of_space(rocks)
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as inner:
            raise RuntimeError("worker failed") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)  # through the cause
    assert not is_out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not is_out_of_space(Exception("IO error: Corruption: bad block"))
    assert not is_out_of_space(ValueError("no space here"))


def test_a_full_store_answers_resource_exhausted_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    exc = StoreFull("the store's disk is full (IO error: No space left on device: /data/db/000004.log)")
    assert status_code_of(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert pair_of(exc) == (507, 2)  # the Handle API's Insufficient Storage
    message, reason, _ = describe(exc)
    assert reason == "STORE_FULL" and "full" in message and "/" not in message  # no paths leak
    with caplog.at_level(logging.ERROR, logger="idnode.errors"):
        log_for_operators(NotFound("no such identifier"), internal=False)
        error_doc(MethodNotAllowed("use GET"), "88.118.8/A")  # a 405 is the client's, not logged
        assert caplog.records == []
        error_doc(exc, "88.118.8/A")  # the operator, not the caller, learns where
    assert [r.getMessage() for r in caplog.records] == [f"a write was refused: {exc}"]


def test_import_refuses_to_start_without_the_disk_it_needs(tmp_path: Path) -> None:
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "huge.csv"
    with open(source, "wb") as f:  # sparse: 10 TB apparent, a few kB on disk
        f.write(b"identifier,URL\n88.118.5/A,https://a\n")
        f.truncate(10 * 10**12)
    result = CliRunner().invoke(
        cli, ["--data-dir", str(layout.root), "import", str(source), "--create-enterprises", "--quiet"]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not enough free disk"), result.output
    assert "10.0 TB of CSV input" in lines[0] and "Traceback" not in result.output
    assert raw_records(layout.db) == {}  # nothing read, nothing written
    assert not (tmp_path / "node" / "db.bulk").exists() or not any((tmp_path / "node" / "db.bulk").iterdir())


def test_no_space_check_is_for_offline_imports(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("identifier,URL\n88.118.5/A,https://a\n")
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path), "import", str(source), "--via", "localhost:1", "--no-space-check"]
    )
    assert result.exit_code == 2 and "--no-space-check" in result.output


# -- export -----------------------------------------------------------------------------------


def test_records_under_a_prefix_by_the_counters(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db", ("8", "9"))
    source = tmp_path / "in.csv"
    source.write_text(
        "identifier,URL\n"
        + "".join(f"88.118.8/A{i},u\n" for i in range(3))
        + "".join(f"88.118.9/B{i},u\n" for i in range(5))
    )
    assert run_import(db, source, workers=0).imported == 8
    with RocksStore(db) as store:
        assert records_under(store, None) == 8
        assert records_under(store, "88.118") == 8
        assert records_under(store, "88.118.8") == 3
        assert records_under(store, "88.118.9") == 5
        assert records_under(store, "88.118.7") == 0
        assert records_under(store, "88.118.9.1") is None  # inside 88.118.9: the counters cannot tell


def test_the_export_estimate_weighs_a_record_as_the_output_packs_it(tmp_path: Path) -> None:
    sample = b"".join(b"88.118.8/SN-%06d,https://example.com/p/%d,B2024-07\n" % (i, i) for i in range(1000))
    header = b"identifier,URL,2:batch\n"
    plain = export_need(tmp_path / "out.csv", 10**6, sample, 1000, header)
    assert plain == int((len(header) + len(sample) / 1000 * 10**6) * 1.10) + EXPORT_FIXED_BYTES
    for packed in ("out.csv.gz", "out.csv.zst"):
        assert EXPORT_FIXED_BYTES < export_need(tmp_path / packed, 10**6, sample, 1000, b"") < plain / 2


def test_an_export_that_cannot_fit_is_refused_in_one_line_and_leaves_the_file_alone(tmp_path: Path) -> None:
    sample = b"88.118.8/A,https://a\n" * 100
    free = free_bytes(tmp_path)
    check_export_space(tmp_path / "out.csv", 1000, sample, 100, b"")  # a few kB: fits
    with pytest.raises(NotEnoughDisk) as caught:  # 21 bytes a record, records for 2x what is free
        check_export_space(tmp_path / "out.csv", free // 10, sample, 100, b"")
    assert caught.value.reason == "NOT_ENOUGH_DISK" and "--no-space-check" in caught.value.message

    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_text("identifier,URL\n88.118.5/A,https://a\n")
    imported = CliRunner().invoke(
        cli, ["--data-dir", str(layout.root), "import", str(source), "--create-enterprises", "--quiet"]
    )
    assert imported.exit_code == 0, imported.output
    with RocksStore(layout.db) as store:  # the counters say a huge node (a fault not made for real)
        store.commit(Txn(adds=(Add(COUNT_TOTAL, 10**12),)))
    dest = tmp_path / "out.csv"
    dest.write_text("what was there\n")
    for extra in ([], ["--no-space-check"]):
        result = CliRunner().invoke(
            cli, ["--data-dir", str(layout.root), "export", str(dest), "--quiet", *extra]
        )
        if not extra:
            assert result.exit_code == 1, result.output
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: not enough free disk"), result.output
            assert dest.read_text() == "what was there\n"  # not truncated
        else:
            assert result.exit_code == 0, result.output
