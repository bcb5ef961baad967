"""A disk that really fills up: a small tmpfs mounted for each test (root only), the store and an
offline import on it, then more room and the same work again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.bulk import NotEnoughDisk, run_export, run_import
from registry.bulk.space import free_bytes
from registry.rocks import RocksStore
from registry.store import Put, StoreFull, Table, Txn
from tests.bulk_support import assert_counts_match, content, gen_data, make_node

Resize = Callable[[str], None]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Resize]]:
    """A tmpfs of 1 MiB at tmp_path/disk, and a function that gives it another size."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    try:
        yield mount, resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_write_on_a_full_disk_is_store_full_and_loses_nothing_acknowledged(
    small_disk: tuple[Path, Resize],
) -> None:
    mount, resize = small_disk
    resize("4m")
    store = RocksStore(mount / "db")
    value = bytes(range(256)) * 400  # 100 kB; RocksDB's log takes it as it is
    acknowledged = 0
    with pytest.raises(StoreFull):
        for acknowledged in range(1000):
            store.commit(Txn(writes=(Put(Table.RECORDS, b"k%04d" % acknowledged, value),)))
    assert acknowledged > 0
    assert store.get(Table.RECORDS, b"k0000") == value  # reads go on
    with pytest.raises(StoreFull):  # and writes stay refused until the store is opened again
        store.commit(Txn(writes=(Put(Table.RECORDS, b"small", b"v"),)))
    store.close()  # does not raise the full disk again
    with pytest.raises(StoreFull):  # opening writes its log into a new file: no room for it
        RocksStore(mount / "db")
    resize("64m")
    with RocksStore(mount / "db") as again:
        assert all(again.get(Table.RECORDS, b"k%04d" % i) == value for i in range(acknowledged))
        assert again.get(Table.RECORDS, b"k%04d" % acknowledged) is None  # the refused write
        again.commit(Txn(writes=(Put(Table.RECORDS, b"small", b"v"),)))
        assert again.get(Table.RECORDS, b"small") == b"v"


@pytest.mark.parametrize(
    ("size", "phase"),
    [("1m", "writing the runs"), ("2500k", "merging them")],  # where 20,000 rows fill it
)
def test_an_import_that_fills_the_disk_stops_cleanly_and_resumes(
    small_disk: tuple[Path, Resize], tmp_path: Path, size: str, phase: str
) -> None:
    mount, resize = small_disk
    source = tmp_path / "gen.csv"
    gen_data().write(str(source), 20_000, 2, 7)  # 3 MB
    expected_db = make_node(tmp_path / "expected", ("1", "2"))
    run_import(expected_db, source, reject_path=tmp_path / "expected.rejects.csv")

    resize("64m")
    db = make_node(mount / "db", ("1", "2"))
    resize(size)
    rejects = mount / "rejects.csv"
    with pytest.raises(NotEnoughDisk) as caught:
        run_import(db, source, reject_path=rejects, check_space=False)
    err = caught.value
    assert err.reason == "DISK_FULL", err.message
    assert "run the same command again to resume" in err.message and str(mount) in err.message
    if phase == "merging them":
        assert ".sst" in err.message  # the merge's files, not the runs, filled it

    resize("8m")  # some room, but less than the estimate (~68 MB for 3 MB of CSV)
    with pytest.raises(NotEnoughDisk) as refused:
        run_import(db, source, reject_path=rejects)
    assert refused.value.reason == "NOT_ENOUGH_DISK"

    resize("128m")
    summary = run_import(db, source, reject_path=rejects)
    # The input is one chunk: filled while writing its runs, the import had committed nothing.
    assert summary.resumed == (phase == "merging them") and summary.rows == 20_000
    assert content(db) == content(expected_db)
    assert_counts_match(db)
    assert not (mount / "db.bulk").exists() or not any((mount / "db.bulk").iterdir())


def test_an_export_is_refused_before_it_touches_its_file_and_the_file_it_replaces_counts_as_room(
    small_disk: tuple[Path, Resize], tmp_path: Path
) -> None:
    """On a real small filesystem: refused while the estimate does not fit, the old file left as it
    was; written whole once there is room; and written again over itself where the space it already
    takes is what makes the difference."""
    mount, resize = small_disk
    source = tmp_path / "gen.csv"
    gen_data().write(str(source), 20_000, 2, 7)  # 3 MB
    db = make_node(tmp_path / "db", ("1", "2"))
    assert run_import(db, source).imported == 20_000
    expected = tmp_path / "expected.csv"
    run_export(db, expected)
    dest = mount / "out.csv"
    dest.write_bytes(b"the last export\n")
    with pytest.raises(NotEnoughDisk) as refused:
        run_export(db, dest)
    assert refused.value.reason == "NOT_ENOUGH_DISK" and str(mount) in refused.value.message
    assert dest.read_bytes() == b"the last export\n"

    need = int(refused.value.metadata["needed_bytes"])
    resize(f"{need // 1024 + 64}k")
    assert run_export(db, dest).records == 20_000
    written = dest.stat().st_blocks * 512
    assert dest.read_bytes() == expected.read_bytes()
    # Free now: less than the estimate; with what the old file holds, enough.
    assert free_bytes(mount) < need <= free_bytes(mount) + written
    assert run_export(db, dest).records == 20_000
    assert dest.read_bytes() == expected.read_bytes()
