"""The bulk import's worker pool (registry.bulk.workers): how it starts, and that every worker gets
the import's settings exactly once, whether forked or spawned."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from registry.bulk import run_import, workers
from resolver.datadir import DataDir
from tests.bulk_support import assert_counts_match, content, gen_data

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import ctypes, json, os, sys, threading
from registry.bulk import chunks
from registry.bulk.formats import Format
from registry.bulk.rows import RowRules
from registry.bulk import workers
from registry.bulk.session import BulkImportError
from registry.bulk.workers import WorkerPool
from registry.model import Principal


class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def from_heap() -> bool:  # a 16 MiB block from the heap (the workers' malloc settings), not mapped
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    mapped = libc.mallinfo2().hblkhd
    block = bytearray(16 << 20)
    grew = libc.mallinfo2().hblkhd - mapped
    del block
    return grew < 16 << 20


def probe(_: int) -> list:
    settings = chunks._settings
    return [os.getpid(), None if settings is None else settings.sst_min_rows, from_heap()]


if __name__ == "__main__":
    if sys.argv[1] == "with-a-thread":
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    rules = RowRules("88.118", {}, Principal.admin(), 1, 7)
    settings = chunks.Settings(rules, Format.CSV, (), chunks.Conflict.FAIL, None, 7)
    if sys.argv[1] == "a-copy-too-many":
        workers.CONFIGURE_TIMEOUT = 1.0  # before the fork: the workers wait this long
    with WorkerPool(2) as pool:
        if sys.argv[1] == "a-copy-too-many":  # one copy is left waiting, as if a worker never took it
            pool.processes = 3
            try:
                pool.configure(settings)
            except BulkImportError as exc:
                print(json.dumps({"error": str(exc)}))
            sys.exit(0)
        configured = pool.configure(settings)
        seen = sorted({tuple(p) for p in pool.imap(probe, range(200))})
        print(json.dumps({"method": pool.start_method, "configured": configured, "seen": seen}))
"""


@pytest.mark.parametrize(("threads", "method"), [("alone", "fork"), ("with-a-thread", "spawn")])
def test_every_worker_gets_the_settings_once(tmp_path: Path, threads: str, method: str) -> None:
    """Forked from a process running one thread, spawned from one running two; either way each
    of the two workers takes one copy of the settings and its malloc settings, and every task sees
    them."""
    script = tmp_path / "pool_probe.py"  # a file: spawned workers import the main module by path
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), threads], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["method"] == method
    assert len(set(report["configured"])) == 2
    assert report["seen"] and all(rows == 7 and heap for _, rows, heap in report["seen"])
    assert {pid for pid, _, _ in report["seen"]} <= set(report["configured"])


def test_a_worker_left_without_settings_is_a_bulk_import_error(tmp_path: Path) -> None:
    script = tmp_path / "pool_probe.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), "a-copy-too-many"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "did not all start within 1 s" in json.loads(out.stdout)["error"]


def test_this_process_is_not_single_threaded_with_a_thread_running() -> None:
    stop = threading.Event()
    extra = threading.Thread(target=stop.wait)
    extra.start()
    try:
        assert not workers.single_threaded()
    finally:
        stop.set()
        extra.join()


def test_a_pool_needs_a_process() -> None:
    with pytest.raises(ValueError, match="at least one"):
        workers.WorkerPool(0)


def test_idnode_import_forks_its_workers_and_imports_as_one_process_would(tmp_path: Path) -> None:
    """``idnode import`` runs a single thread when it starts its workers, so they are forked; the
    node it leaves holds what an import without workers leaves."""
    source = tmp_path / "gen.csv"
    gen_data().write(str(source), 30_000, 3, 11)
    forked, here = DataDir(tmp_path / "forked"), DataDir(tmp_path / "here")
    forked.init("88.118")
    here.init("88.118")
    cli = (
        "import sys\n"
        "from registry.bulk import workers\n"
        "started = workers.WorkerPool.__init__\n"
        "def noting(self, n):\n"
        "    started(self, n)\n"
        "    print('workers:', self.start_method, file=sys.stderr)\n"
        "workers.WorkerPool.__init__ = noting\n"
        "sys.argv = ['idnode', *sys.argv[1:]]\n"
        "from resolver.entry import main\n"
        "main()\n"
    )
    args = ["--data-dir", str(forked.root), "import", str(source), "--create-enterprises", "--quiet"]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            cli,
            *args,
            "--workers",
            "2",
            "--reject-file",
            str(tmp_path / "forked.rejects"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "workers: fork" in out.stderr
    run_import(
        str(here.db),
        str(source),
        workers=0,
        create_enterprises=True,
        issue_fingerprint=lambda prefix: "00" * 32,
        reject_path=tmp_path / "here.rejects",
    )
    imported = content(forked.db)
    assert len(imported) == 30_000 and imported == content(here.db)
    assert_counts_match(forked.db)
