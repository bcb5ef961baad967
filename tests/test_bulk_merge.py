"""The offline import's external sort: records of fresh owners go through run files, merged at the
end into SST files that do not overlap (registry.bulk.runs, registry.bulk.importer).

The reference for every comparison is an independent path: the same rows imported into a running
node's Registry (chunk by chunk, looked up and written through WriteBatches, no runs at all)."""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

import pytest

from registry.bulk import TextProgress, importer, run_import
from registry.model import Principal, Value
from registry.rocks import RocksStore
from registry.service import Registry
from tests.bulk_support import assert_counts_match, content, counters, gen_data, make_node

HEADER = "identifier,URL\n"
RECORD_KEY = re.compile(rb"^88\.118\.\d+/")


def _source(tmp_path: Path, rows: int = 3000) -> Path:
    """Generated rows under 88.118.8 and .9, with duplicates near and far (other spellings too)."""
    path = tmp_path / "gen.csv"
    gen_data().write(str(path), rows, 2, 5)
    lines = path.read_text().replace("88.118.1/", "88.118.8/").replace("88.118.2/", "88.118.9/").splitlines()
    out = [lines[0]]
    for i, row in enumerate(lines[1:]):
        out.append(row)
        if i % 211 == 7:
            out.append(lines[1 + i // 3].upper().replace("HTTPS", "https"))  # far earlier
        if i % 307 == 5:
            out.append(lines[i])  # the row before again
    path.write_text("\n".join(out) + "\n")
    return path


def _online(db: Path, src: Path, policy: str, rejects: Path) -> object:
    with RocksStore(db) as store:
        return run_import(Registry(store), src, on_conflict=policy, reject_path=rejects, workers=0)


def _record_files(db: Path) -> list[dict]:
    with RocksStore(db) as store:
        files = store._db.live_files()
    return [f for f in files if RECORD_KEY.match(f["start_key"]) and RECORD_KEY.match(f["end_key"])]


@pytest.mark.parametrize("policy", ["fail", "skip", "replace"])
@pytest.mark.parametrize("workers", [0, 2])
def test_merged_import_equals_the_online_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, workers: int
) -> None:
    monkeypatch.setattr(importer._Importer, "PARTITION_RECORDS", 700)  # several partitions
    src = _source(tmp_path)
    reference = make_node(tmp_path / "reference")
    expected = _online(reference, src, policy, tmp_path / "ref.rejects.csv")
    db = make_node(tmp_path / "db")
    rejects = tmp_path / "rejects.csv"
    got = run_import(db, src, on_conflict=policy, reject_path=rejects, workers=workers, chunk_bytes=16 << 10)
    fields = ("rows", "imported", "rejected", "skipped", "replaced")
    assert [getattr(got, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert got.rejected + got.skipped + got.replaced > 0  # the duplicates were met
    assert 0 < got.merge_seconds < got.seconds and expected.merge_seconds == 0  # only offline merges
    assert content(db) == content(reference)
    assert counters(db) == counters(reference)
    assert_counts_match(db)
    assert rejects.read_text() == (tmp_path / "ref.rejects.csv").read_text()
    assert not list(Path(str(db) + ".bulk").glob("*/*"))  # runs and SST files are gone


def test_merged_files_do_not_overlap_and_skip_level_0(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each partition's SST file covers its own key range and is ingested below level 0, so no
    compaction has to merge them."""
    monkeypatch.setattr(importer._Importer, "PARTITION_RECORDS", 500)
    db = make_node(tmp_path / "db")
    summary = run_import(db, _source(tmp_path), workers=0, chunk_bytes=16 << 10)
    files = sorted(_record_files(db), key=lambda f: f["start_key"])
    assert len(files) >= summary.imported // 500
    assert sum(f["num_entries"] for f in files) == summary.imported
    assert all(f["level"] > 0 for f in files)
    for before, after in itertools.pairwise(files):
        assert before["end_key"] < after["start_key"]


def test_owner_with_records_goes_chunk_by_chunk_beside_the_merge(tmp_path: Path) -> None:
    """88.118.8 holds a record before the import (conflicting with a row): its rows are looked up
    and written per chunk; 88.118.9's go through the merge. Both settle duplicates the same way."""
    src = _source(tmp_path)
    first = next(r.split(",")[0] for r in src.read_text().splitlines() if r.startswith("88.118.8/"))
    nodes = []
    for name in ("reference", "db"):
        node = make_node(tmp_path / name)
        with RocksStore(node) as store:
            Registry(store).create(Principal.admin(), first, [Value(1, "URL", "https://old")])
        nodes.append(node)
    reference, db = nodes
    expected = _online(reference, src, "fail", tmp_path / "ref.rejects.csv")
    got = run_import(db, src, reject_path=tmp_path / "rejects.csv", workers=2, chunk_bytes=16 << 10)
    assert (got.imported, got.rejected) == (expected.imported, expected.rejected)
    assert content(db) == content(reference)
    assert content(db)[first][1][0][2] == "https://old"
    assert_counts_match(db)
    assert (tmp_path / "rejects.csv").read_text() == (tmp_path / "ref.rejects.csv").read_text()


def test_rejects_with_a_carriage_return_are_sorted_back_into_row_order(tmp_path: Path) -> None:
    """A reject whose identifier holds a lone CR (quoted in the CSV input) is written so that the
    reject file reads back whole, and the end-of-import sort puts the merge's duplicates in place."""
    src = _source(tmp_path, rows=600)
    lines = src.read_text().splitlines()
    lines.insert(3, '"88.118.8/b\rc",https://x')  # a control character: INVALID_ARGUMENT
    src.write_bytes(("\n".join(lines) + "\n").encode())
    reference = make_node(tmp_path / "reference")
    _online(reference, src, "fail", tmp_path / "ref.rejects.csv")
    db = make_node(tmp_path / "db")
    got = run_import(db, src, reject_path=tmp_path / "rejects.csv", workers=0, chunk_bytes=8 << 10)
    assert (tmp_path / "rejects.csv").read_bytes() == (tmp_path / "ref.rejects.csv").read_bytes()
    with open(tmp_path / "rejects.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == got.rejected
    assert [int(r["row"]) for r in rows] == sorted(int(r["row"]) for r in rows)
    assert any(r["identifier"] == "88.118.8/b\rc" for r in rows)
    assert any(r["reason"] == "ALREADY_EXISTS" for r in rows)


def test_partitions_are_balanced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cuts come from a thinned sample of the runs' index keys, each run's from its own offset:
    the runs of one input are alike, so the same index positions in every run would stack the
    samples at a few points of the key space and make a few partitions hold most records."""
    monkeypatch.setattr(importer._Importer, "PARTITION_RECORDS", 200)
    monkeypatch.setattr(importer._Importer, "SAMPLES", 10)  # a few index keys of each run
    db = make_node(tmp_path / "db")
    summary = run_import(db, _source(tmp_path), workers=0, chunk_bytes=128 << 10)
    sizes = [f["num_entries"] for f in _record_files(db)]
    assert len(sizes) >= 10
    # Measured (deterministic input): 2.0x the mean at most; the same positions in every run: 3.9x.
    assert max(sizes) <= 3 * summary.imported / len(sizes), sizes


def test_progress_reports_the_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the rows are read, progress counts merged partitions (the merge can take as long as
    the reading), in lines the reading's own parser does not confuse with its own."""
    monkeypatch.setattr(importer._Importer, "PARTITION_RECORDS", 700)
    out = io.StringIO()
    db = make_node(tmp_path / "db")
    run_import(db, _source(tmp_path), workers=0, progress=TextProgress(out, interval=0))
    lines = out.getvalue().splitlines()
    merging = [line for line in lines if line.startswith("import merge: ")]
    total = len(_record_files(db))
    assert total > 1
    assert merging[0].startswith(f"import merge: 0/{total} partitions")
    assert merging[-1].startswith(f"import merge: {total}/{total} partitions")
    reading = [line for line in lines if line.startswith("import: ")]
    assert reading and lines.index(reading[-1]) < lines.index(merging[0])


@pytest.mark.parametrize("policy", ["fail", "skip", "replace"])
def test_merge_spills_the_duplicates_it_rejects_and_only_counts_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """A merged partition holds no list of the records it drops: under fail their reject lines go
    to a file as the merge goes (appended to the reject file at commit, then removed); under skip
    and replace they are only counted. A file made mostly of duplicates does not fill memory."""
    monkeypatch.setattr(importer._Importer, "PARTITION_RECORDS", 700)
    seen: list[tuple[importer.Merged, list[str]]] = []
    commit = importer._Importer._commit_merged

    def spy(self: importer._Importer, merged: importer.Merged) -> None:
        lines = Path(merged.rejects).read_text().splitlines() if merged.rejects else []
        seen.append((merged, lines))
        commit(self, merged)
        assert not (merged.rejects and Path(merged.rejects).exists())

    monkeypatch.setattr(importer._Importer, "_commit_merged", spy)
    db = make_node(tmp_path / "db")
    rejects = tmp_path / "rejects.csv"
    src = _source(tmp_path)
    got = run_import(db, src, on_conflict=policy, workers=2, chunk_bytes=16 << 10, reject_path=rejects)
    assert len(seen) > 1
    duplicates = sum(m.duplicates for m, _ in seen)
    # (duplicates within one chunk are settled before the merge; those across chunks in it)
    assert 0 < duplicates <= got.rejected + got.skipped + got.replaced
    spilled = [line for _, lines in seen for line in lines]
    assert len(spilled) == (duplicates if policy == "fail" else 0)
    assert set(spilled) <= set(rejects.read_text().splitlines())  # every one reached the reject file
