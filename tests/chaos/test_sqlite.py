"""The SQLite file failing under load: its disk full (a small tmpfs mounted for the test) and
its write lock held by another process. Writes fail, reads still work: requests are refused
503 before any upstream call, settlements wait for the file, and all is well once it is."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import ACQUIRE_TIMEOUT, PRICES, Chaos, chaos_env
from tests.chaos.harness import (
    OUTAGE_SECONDS,
    Load,
    assert_clear_answers,
    check_money,
    report,
)
from tests.support.upstream import ScriptedUpstream

RECOVERY_SECONDS = 3.0


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 16 MB tmpfs mounted for this test (and unmounted after it)."""
    where = Path(tempfile.mkdtemp(prefix="a2a-small-disk-", dir="/tmp"))
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a small tmpfs for the disk-full test: {out.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


@pytest.fixture
def chaos_on_disk(small_disk: Path, upstream: ScriptedUpstream) -> Iterator[Chaos]:
    yield from chaos_env(small_disk, upstream, f"sqlite:///{small_disk / 'a2agent.db'}")


def _fill(disk: Path) -> Path:
    """Checkpoint the WAL to nothing (so new writes must grow it), then fill the disk."""
    import sqlite3

    conn = sqlite3.connect(disk / "a2agent.db", timeout=10)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    filler = disk / "filler"
    # unbuffered: a buffered file still holds bytes when the disk is full, and its close then
    # raises ENOSPC out of the `with` (seen about one run in four)
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_sqlite_disk_full_under_load(chaos_on_disk: Chaos, small_disk: Path) -> None:
    chaos = chaos_on_disk
    with Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        t_full = time.monotonic()
        filler = _fill(small_disk)
        time.sleep(OUTAGE_SECONDS)
        assert chaos.metric("a2agent_dependency_up", '{dependency="database"}') == 0
        filler.unlink()
        t_free = time.monotonic()
        recovered_in = load.wait_ok_after(t_free)
        n = len(load.shots)
        load.wait_for(n + 40)
    assert not load.failures, load.failures[:5]
    assert_clear_answers(load.shots, max_latency=2 * ACQUIRE_TIMEOUT + 2.0)
    during = [s for s in load.shots if t_full + 0.5 < s.t0 and s.t1 < t_free]
    # SQLite may still find room in pages it already has (a WAL reset after a checkpoint):
    # those writes succeed, and rightly so; the rest must be refused
    assert during and sum(s.status == 503 for s in during) > 0.9 * len(during)
    assert recovered_in < RECOVERY_SECONDS
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    report("sqlite disk full", load.shots, (t_full, t_free), first_200_after_s=recovered_in,
           charged_micro=money.charged, expected_micro=money.expected, verify="clean",
           pending_left=0)


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE state_versions SET version = version WHERE 1 = 0")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@pytest.fixture
def chaos_sqlite(tmp_path: Path, upstream: ScriptedUpstream) -> Iterator[Chaos]:
    yield from chaos_env(tmp_path, upstream, f"sqlite:///{tmp_path / 'a2agent.db'}")


def test_sqlite_locked_by_another_process(chaos_sqlite: Chaos, tmp_path: Path) -> None:
    chaos = chaos_sqlite
    with Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path / "a2agent.db"),
                                   str(OUTAGE_SECONDS)], stdout=subprocess.PIPE, text=True)
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        t_locked = time.monotonic()
        assert locker.wait(OUTAGE_SECONDS + 10) == 0
        t_free = time.monotonic()
        recovered_in = load.wait_ok_after(t_free)
        n = len(load.shots)
        load.wait_for(n + 40)
    assert not load.failures, load.failures[:5]
    # a write waits at most the busy timeout (A2AGENT_DB_ACQUIRE_TIMEOUT) for the lock, and a
    # request at most one batch ahead of its own
    assert_clear_answers(load.shots, max_latency=2 * ACQUIRE_TIMEOUT + 2.0)
    released = t_locked + OUTAGE_SECONDS  # the locker's ROLLBACK (its exit comes a bit later)
    # answered while the lock was held (a request waits up to two busy timeouts)
    during = [s for s in load.shots if t_locked + 0.5 < s.t1 < released - 0.1]
    assert during and all(s.status == 503 for s in during)
    assert recovered_in < RECOVERY_SECONDS
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    report("sqlite locked by another process", load.shots, (t_locked, t_free),
           first_200_after_s=recovered_in, charged_micro=money.charged,
           expected_micro=money.expected, verify="clean", pending_left=0)
