"""State storage faults: a full disk, a read-only state folder, damaged state files at start.

The state folder is a small tmpfs mounted for the test (skipped, with the reason, where
mounting is not permitted). While the daemon runs, the folder is filled up or made read-only
(a read-only bind mount laid over it: as root, chmod would not stop anything). Throughout,
the last good state file must stay intact and readable, the daemon must alert once and keep
trying, plugins must keep getting events, and after the fault clears nothing may be skipped,
even across a kill -9. At start, an empty, truncated or random-bytes state file must never
stop the daemon nor make it skip an event it can still know about.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from reliability_support import duplicates, fsync_recorder_plugin

pytestmark = pytest.mark.reliability

PLUGINS = ("alpha", "beta")
JOURNAL_FAULT = "State journal fault"
CHECKPOINT_FAULT = "State checkpoint fault"
WRITTEN_AGAIN = "is written again"


# --------------------------------------------------------------------------- mounts


def _mount(*args: str) -> Optional[str]:
    """Run mount; None when it worked, else what it said."""
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip() or "mount failed")


def _unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` on ``folder``; the test is skipped if mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    problem = _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder))
    if problem:
        pytest.skip(f"cannot mount a tmpfs for the state folder (needs privileges): {problem}")
    try:
        yield folder
    finally:
        _unmount(folder)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Lay a read-only bind mount of ``folder`` over itself: new files and renames fail with
    EROFS, as on a file system remounted read-only after an error."""
    problem = _mount("--bind", "-o", "ro", str(folder), str(folder))
    if problem:
        pytest.skip(f"cannot make a read-only bind mount: {problem}")
    try:
        yield
    finally:
        _unmount(folder)


def fill_up(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


# --------------------------------------------------------------------------- helpers


def saved_positions(state_file: Path) -> dict:
    """The plugin positions in a state file; fails the test if it is not a good file."""
    with open(state_file, "rb") as handle:
        state = pickle.load(handle)
    (plugins,) = state.values()
    return {name: position for name, (position, _) in plugins.items()}


def new_events(site, count: int) -> List[int]:
    first, last = site.insert_events(count)
    return list(range(first, last + 1))


def start_with_plugins(daemon) -> None:
    for name in PLUGINS:
        daemon.add_plugin(name, fsync_recorder_plugin())
    daemon.start()
    daemon.wait_started()


def wait_all_seen(daemon, ids, timeout: float = 30) -> None:
    for name in PLUGINS:
        daemon.wait_seen(name, ids, timeout=timeout)


def assert_nothing_skipped(daemon, ids) -> int:
    """Every plugin saw every id; returns the duplicates (bounded by the kills)."""
    total = 0
    for name in PLUGINS:
        missing = set(ids) - set(daemon.seen(name))
        assert not missing, f"{name} skipped {sorted(missing)[:20]}"
        total += duplicates(daemon.counts(name))
    return total


# --------------------------------------------------------------------------- faults while running


@pytest.mark.parametrize("fault", ["disk full", "read-only state folder"])
def test_state_storage_fault_keeps_the_last_good_state_alerts_once_and_skips_nothing(
    site, durable_daemon, figures, fault
):
    daemon = durable_daemon
    daemon.write_config(state_save_interval=0.2, status_interval=0.3)
    with small_tmpfs(daemon.state_file.parent) as state_folder:
        start_with_plugins(daemon)
        before = new_events(site, 50)
        wait_all_seen(daemon, before)
        checkpointed = {name: before[-1] for name in PLUGINS}
        daemon.wait_for(
            lambda: saved_positions(daemon.state_file) == checkpointed, 10, "a checkpoint"
        )
        good = daemon.state_file.read_bytes()

        with contextlib.ExitStack() as fault_lasts:
            if fault == "disk full":
                filler = fill_up(state_folder)
                fault_lasts.callback(filler.unlink)
            else:
                fault_lasts.enter_context(read_only(state_folder))
            during = new_events(site, 50)
            wait_all_seen(daemon, during)  # plugins carry on meanwhile
            daemon.wait_for(lambda: CHECKPOINT_FAULT in daemon.log(), 20, "the checkpoint alert")
            more = new_events(site, 50)
            wait_all_seen(daemon, more)
            assert daemon.state_file.read_bytes() == good, "the last good state file changed"
            assert saved_positions(daemon.state_file) == checkpointed
            alerts = daemon.count_in_log(CHECKPOINT_FAULT) + daemon.count_in_log(JOURNAL_FAULT)
            assert 1 <= alerts <= 2, "one alert per kind of fault, not one per event or retry"
            assert daemon.alive()
        # The fault clears: the daemon says so and saves again.
        daemon.wait_for(lambda: WRITTEN_AGAIN in daemon.log(), 20, "the recovery")
        after = new_events(site, 50)
        wait_all_seen(daemon, after)
        daemon.kill()  # nothing skipped even without a clean stop
        while_down = new_events(site, 20)
        daemon.start()
        wait_all_seen(daemon, while_down)
        assert daemon.stop() == 0
        repeats = assert_nothing_skipped(daemon, before + during + more + after + while_down)
        assert repeats <= len(PLUGINS)  # one kill: at most the events in hand
        alerts_total = daemon.count_in_log(CHECKPOINT_FAULT) + daemon.count_in_log(JOURNAL_FAULT)
        figures.add(
            "State storage faults",
            fault,
            f"state file intact; {alerts_total} alerts; events during the fault "
            f"{len(during + more)} delivered; {repeats} repeats after a kill -9",
        )


def test_positions_file_on_a_full_disk_is_an_error_not_a_sigbus(tmp_path):
    """A sparse mapped file gets its blocks at the first store into a page; on a full disk
    the kernel then kills the daemon with SIGBUS. The file must get its blocks up front, so
    that a full disk is an OSError that the state store handles (it falls back to the
    journal and alerts). Run in a child process: a SIGBUS would kill pytest itself."""
    with small_tmpfs(tmp_path / "state") as folder:
        fill_up(folder)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path\n"
                "from shotgun_events.slots import PositionSlots\n"
                "try:\n"
                "    PositionSlots(Path(sys.argv[1]))\n"
                "except OSError as error:\n"
                "    print('OSError', error.errno)\n",
                str(folder / "events.id.positions.1"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == 0, f"the process died (signal {-child.returncode})"
        assert child.stdout.split() == ["OSError", str(errno.ENOSPC)]
        assert not (folder / "events.id.positions.1").exists()


def test_daemon_restarted_on_a_full_disk_runs_alerts_and_skips_nothing(
    site, durable_daemon, figures
):
    daemon = durable_daemon
    daemon.write_config(state_save_interval=0.2)
    with small_tmpfs(daemon.state_file.parent) as state_folder:
        start_with_plugins(daemon)
        before = new_events(site, 30)
        wait_all_seen(daemon, before)
        filler = fill_up(state_folder)
        during = new_events(site, 30)
        wait_all_seen(daemon, during)
        daemon.kill()  # e.g. the machine's OOM killer, or an admin; systemd restarts it
        while_down = new_events(site, 30)
        daemon.start()
        daemon.wait_for(lambda: "Starting in the foreground" in daemon.log(), 20, "the start")
        wait_all_seen(daemon, while_down)  # it runs, on a full disk
        assert daemon.alive()
        assert CHECKPOINT_FAULT in daemon.log().split("Starting in the foreground")[-1]
        filler.unlink()
        daemon.wait_for(lambda: WRITTEN_AGAIN in daemon.log(), 20, "the recovery")
        after = new_events(site, 30)
        wait_all_seen(daemon, after)
        daemon.kill()
        last = new_events(site, 10)
        daemon.start()
        wait_all_seen(daemon, last)
        assert daemon.stop() == 0
        repeats = assert_nothing_skipped(daemon, before + during + while_down + after + last)
        assert repeats <= 2 * len(PLUGINS)  # two kills: at most the events in hand
    figures.add(
        "State storage faults",
        "restart on a full disk",
        f"ran and alerted; nothing skipped; {repeats} repeats after two kills -9",
    )


@pytest.mark.parametrize("end", ["kill -9", "SIGTERM"])
def test_a_gap_opened_on_a_full_disk_is_not_passed_by_the_saved_position(
    site, durable_daemon, figures, end
):
    """The disk is full when an id commits late: the journal cannot record the gap. Plugins go
    on, but the position a kill (or a stop whose final checkpoint fails) leaves must stay
    before the gap: after the restart the late event is delivered when it commits."""
    daemon = durable_daemon
    daemon.write_config(state_save_interval=0.2, gap_timeout=300)
    with small_tmpfs(daemon.state_file.parent) as state_folder:
        start_with_plugins(daemon)
        before = new_events(site, 10)
        wait_all_seen(daemon, before)
        filler = fill_up(state_folder)
        late = site.reserve_event_id()
        during = new_events(site, 10)
        wait_all_seen(daemon, during)  # plugins are not held up by the fault
        daemon.wait_for(lambda: JOURNAL_FAULT in daemon.log(), 10, "the journal alert")
        time.sleep(0.5)  # a few checkpoints fail too
        refused = daemon.command("reset", "alpha", "--to", str(before[0]))
        assert refused.returncode == 1, refused
        assert "the reset could not be saved" in refused.stdout + refused.stderr
        if end == "kill -9":
            daemon.kill()
        else:
            assert daemon.stop() == 0
        filler.unlink()
        daemon.start()
        daemon.wait_started()
        wait_all_seen(daemon, during)
        late.commit(event_type="Shotgun_Shot_Change", attribute_name="sg_status_list")
        wait_all_seen(daemon, [late.id], timeout=10)
        assert daemon.stop() == 0
    held = daemon.count_in_log("stays before event id")
    assert held == len(PLUGINS), "said once per plugin"
    repeats = assert_nothing_skipped(daemon, before + during + [late.id])
    assert repeats <= len(PLUGINS) * len(during)  # the events after the gap, at most
    figures.add(
        "State storage faults",
        f"late id on a full disk, then {end}",
        f"late event delivered after the restart; {repeats} events after the gap repeated",
    )


# --------------------------------------------------------------------------- damaged files at start

DAMAGE = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: os.urandom(max(64, len(data))),
}
UNUSABLE = "is unusable"


def run_once(daemon, site, *, end: str) -> List[int]:
    """Start, deliver a few events, then stop cleanly or kill -9; returns the events."""
    daemon.start()
    daemon.wait_started()
    ids = new_events(site, 20)
    wait_all_seen(daemon, ids)
    if end == "kill -9":
        daemon.kill()
    else:
        assert daemon.stop() == 0
    return ids


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_state_file_after_a_clean_stop_falls_back_to_the_previous_copy(
    site, durable_daemon, figures, damage
):
    daemon = durable_daemon
    for name in PLUGINS:
        daemon.add_plugin(name, fsync_recorder_plugin())
    first = run_once(daemon, site, end="clean stop")
    second = run_once(daemon, site, end="clean stop")  # leaves a good previous copy
    daemon.state_file.write_bytes(DAMAGE[damage](daemon.state_file.read_bytes()))
    while_down = new_events(site, 10)
    daemon.start()
    wait_all_seen(daemon, while_down)
    assert daemon.stop() == 0
    log = daemon.log().split("Starting in the foreground")[3]
    assert f"The state file {daemon.state_file} {UNUSABLE}" in log  # said loudly, at ERROR
    assert "ERROR - Positions come from the previous copy" in log
    assert list(daemon.state_file.parent.glob("events.id.damaged-*")), "the bad file was kept"
    repeats = assert_nothing_skipped(daemon, first + second + while_down)
    figures.add(
        "Damaged state file at start",
        f"{damage}, after a clean stop",
        f"started; previous copy used; nothing skipped; {repeats} events delivered again",
    )


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_state_and_previous_copy_after_a_kill_resume_from_the_journal(
    site, durable_daemon, figures, damage
):
    daemon = durable_daemon
    daemon.write_config(state_save_interval=0.2)
    for name in PLUGINS:
        daemon.add_plugin(name, fsync_recorder_plugin())
    before = run_once(daemon, site, end="kill -9")
    for path in (daemon.state_file, daemon.state_file.with_name("events.id.prev")):
        if path.exists():
            path.write_bytes(DAMAGE[damage](path.read_bytes()))
    while_down = new_events(site, 10)
    daemon.start()
    wait_all_seen(daemon, while_down)
    assert daemon.stop() == 0
    log = daemon.log().split("Starting in the foreground")[2]
    assert f"The state file {daemon.state_file} {UNUSABLE}" in log
    assert "positions come from the journal only" in log
    repeats = assert_nothing_skipped(daemon, before + while_down)
    assert repeats <= len(PLUGINS)  # one kill: at most the events in hand
    figures.add(
        "Damaged state file at start",
        f"{damage}, state and previous copy, after a kill -9",
        f"started; journal used; nothing skipped; {repeats} events delivered again",
    )
