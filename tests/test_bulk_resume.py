"""Resuming after a real ``kill -9`` of the import process: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from registry import codec
from registry.bulk import ImportSummary, run_import
from registry.model import Principal, Value
from registry.rocks import RocksStore
from registry.service import Registry
from tests.bulk_support import ROOT, assert_counts_match, content, counters, gen_data, make_node

ROWS = 12_000

SCRIPT = """
import json, os, sys
from registry.bulk import TextProgress, importer, run_import
if __name__ == "__main__":
    db, src, rejects, policy = sys.argv[1:5]
    if len(sys.argv) > 5:  # smaller merge partitions: a 12,000-row import then merges several
        importer._Importer.PARTITION_RECORDS = int(sys.argv[5])
    summary = run_import(db, src, reject_path=rejects, on_conflict=policy, workers=2, chunk_bytes=32 << 10,
                         sst_min_rows=50, progress=TextProgress(sys.stderr, interval=0))
    print(json.dumps(summary.to_dict()))
"""


def _source(tmp_path: Path) -> Path:
    """Generated rows plus bad rows and duplicates (within a chunk and across chunks)."""
    path = tmp_path / "gen.csv"
    gen_data().write(str(path), ROWS, 2, 11)
    lines = path.read_text().replace("88.118.1/", "88.118.8/").replace("88.118.2/", "88.118.9/").splitlines()
    header, rows = lines[0], lines[1:]
    out = [header]
    for i, row in enumerate(rows):
        out.append(row)
        if i % 97 == 0:
            out.append("not-an-identifier" + row[row.index(",") :])
        if i % 1500 == 10:
            out.append(rows[i - 3])  # an earlier row again (same chunk)
        if i % 2500 == 20:
            out.append(rows[i // 2].upper().replace("HTTPS", "https"))  # far earlier, other spelling
    path.write_text("\n".join(out) + "\n")
    return path


def _reference(node: Path, src: Path, rejects: Path, policy: str = "fail") -> ImportSummary:
    """The same import into the node as a running node's Registry: chunk by chunk, no runs and no
    merge, an independent path to compare the offline import with."""
    with RocksStore(node) as store:
        return run_import(Registry(store), src, reject_path=rejects, on_conflict=policy, workers=0)


def _run_until_killed(db: Path, src: Path, rejects: Path, policy: str, kill_after_rows: int) -> bool:
    """Start the import in a child process and SIGKILL it (and its workers) once it reports
    ``kill_after_rows`` rows; False if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(db), str(src), str(rejects), policy],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if line.startswith("import:") and int(line.split()[1]) >= kill_after_rows:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
        proc.wait()
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("policy", ["fail", "replace"])
def test_kill_minus_9_then_rerun_equals_an_uninterrupted_import(tmp_path: Path, policy: str) -> None:
    src = _source(tmp_path)
    reference = make_node(tmp_path / "reference")
    expected = _reference(reference, src, tmp_path / "ref.rejects.csv", policy)
    assert expected.rejected > 0 and expected.rows > ROWS

    db = make_node(tmp_path / "db")
    rejects = tmp_path / "rejects.csv"
    kills = 0
    for fraction in (0.25, 0.6):
        kills += _run_until_killed(db, src, rejects, policy, int(expected.rows * fraction))
    assert kills >= 1, "the import finished before it could be killed"
    final = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db), str(src), str(rejects), policy],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(final.stdout)
    assert summary["resumed"] is True
    for name in ("rows", "imported", "rejected", "skipped", "replaced"):
        assert summary[name] == getattr(expected, name), name
    assert content(db) == content(reference)
    assert counters(db) == counters(reference)
    assert_counts_match(db)
    assert rejects.read_text() == (tmp_path / "ref.rejects.csv").read_text()
    assert not list(Path(str(db) + ".bulk").glob("*/*.sst"))


def _seed(db: Path, tmp_path: Path) -> None:
    """One record of enterprise 88.118.8 already in the node: that owner's rows are then looked up
    and written chunk by chunk (SST files of chunks), the others' go through runs and the merge."""
    seed = tmp_path / "seed.csv"
    seed.write_text("identifier,URL\n88.118.8/SEED-1,https://example.com/seed\n")
    assert run_import(db, seed, reject_path=tmp_path / f"seed-{db.name}.rejects.csv").imported == 1


@pytest.mark.parametrize(
    ("point", "n", "seeded", "partition_records"),
    [
        ("before-commit", 5, False, 250_000),
        ("before-merge-commit", 0, False, 250_000),
        ("before-merge-ingest", 0, False, 250_000),
        ("before-merge-commit", 2, False, 2_000),  # resumes with 2 of ~6 partitions merged
        ("before-merge-ingest", 3, False, 2_000),
        ("before-commit", 5, True, 250_000),
        ("before-ingest", 5, True, 250_000),
    ],
)
def test_kill_at_the_worst_moments(
    tmp_path: Path, point: str, n: int, seeded: bool, partition_records: int
) -> None:
    """SIGKILL exactly after the rejects are written but before the commit, and after the commit
    but before its SST file is ingested, of a chunk or of a merged partition; the rerun must
    neither lose nor double anything."""
    src = _source(tmp_path)
    reference = make_node(tmp_path / "reference")
    db = make_node(tmp_path / "db")
    if seeded:
        _seed(reference, tmp_path)
        _seed(db, tmp_path)
    expected = _reference(reference, src, tmp_path / "ref.rejects.csv")
    rejects = tmp_path / "rejects.csv"
    args = [sys.executable, "-c", SCRIPT, str(db), str(src), str(rejects), "fail", str(partition_records)]
    env = {**os.environ, "IDNODE_BULK_FAILPOINT": f"{point}:{n}"}
    killed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL
    if point.endswith("ingest"):  # the committed-but-not-ingested file is still there
        assert list(Path(str(db) + ".bulk").glob("*/*.sst"))
    final = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    summary = json.loads(final.stdout)
    assert summary["resumed"] is True
    assert (summary["rows"], summary["imported"], summary["rejected"]) == (
        expected.rows,
        expected.imported,
        expected.rejected,
    )
    assert content(db) == content(reference)
    assert_counts_match(db)
    assert rejects.read_text() == (tmp_path / "ref.rejects.csv").read_text()


def _killed_at(tmp_path: Path, point: str, *extra: str) -> tuple[Path, Path, Path, list[str]]:
    """(source, node, reject file, the import's command) after that command, run on a fresh node,
    was killed at the failpoint ``point``; ``extra`` are the script's further arguments."""
    src = _source(tmp_path)
    db = make_node(tmp_path / "db")
    rejects = tmp_path / "rejects.csv"
    args = [sys.executable, "-c", SCRIPT, str(db), str(src), str(rejects), "fail", *extra]
    env = {**os.environ, "IDNODE_BULK_FAILPOINT": point}
    killed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL
    return src, db, rejects, args


def test_a_node_changed_during_the_interruption_stops_the_resume(tmp_path: Path) -> None:
    """A record written under an owner the import found empty, while the import was stopped before
    merging: resuming would overwrite it, so the import refuses and says what to do."""
    _, db, _, args = _killed_at(tmp_path, "before-merge-commit:0")
    with RocksStore(db) as store:
        Registry(store).create(
            Principal.admin(), "88.118.9/WRITTEN-MEANWHILE", [Value(1, "URL", "https://x")]
        )
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode != 0
    assert "cannot resume" in again.stderr and "88.118.9" in again.stderr
    with RocksStore(db) as store:
        record = codec.decode_record(Registry(store).resolve("88.118.9/WRITTEN-MEANWHILE"))
    assert record.values[0].data == "https://x"


def test_restart_ingests_what_the_abandoned_import_had_committed(tmp_path: Path) -> None:
    """Killed after a merged partition's commit but before its ingestion, then restarted (not
    resumed): the committed partition's records go in first, so the counters, which that commit
    already raised, match the records."""
    src, db, rejects, _ = _killed_at(tmp_path, "before-merge-ingest:1", "2000")
    summary = run_import(db, src, reject_path=rejects, restart=True, workers=0)
    assert summary.resumed is False and summary.rejected > 0
    assert_counts_match(db)
    assert not list(Path(str(db) + ".bulk").glob("*/*"))


def test_a_damaged_run_file_stops_the_resume_and_restart_recovers(tmp_path: Path) -> None:
    """A run file that cannot be read back (damaged on disk, or written by a version with another
    run format) stops the resume with one clear error naming --restart; restarting then gives what
    an uninterrupted import gives."""
    src, db, rejects, args = _killed_at(tmp_path, "before-merge-commit:0")
    run = sorted(Path(str(db) + ".bulk").glob("*/run-*.run"))[0]
    raw = bytearray(run.read_bytes())
    raw[len(raw) // 3] ^= 0x55  # inside its compressed records
    run.write_bytes(bytes(raw))
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode != 0
    assert "cannot be read" in again.stderr and "--restart" in again.stderr
    summary = run_import(db, src, reject_path=rejects, restart=True, workers=2, chunk_bytes=32 << 10)
    reference = make_node(tmp_path / "ref")
    expected = _reference(reference, src, tmp_path / "ref.rejects.csv")
    assert (summary.imported, summary.rejected) == (expected.imported, expected.rejected)
    assert content(db) == content(reference)
    assert_counts_match(db)
