"""The state store: classic formats, the journal, checkpoints, damaged files and disk faults.

Everything here uses real files in ``tmp_path``. Disk-full is simulated by injecting a
failing ``os.write`` / ``os.fsync`` (the tests run as root, where a read-only folder does not
stop writes, and a small file system would need a mount); a vanished state folder gives real
OS errors without any injection.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import pickle
import pickletools
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from shotgun_events import state as state_module
from shotgun_events.state import PluginProgress, SavedState, StateStore

LOGGER = "test.state"
FOLDER = "/studio/plugins"
KEY = (FOLDER, "alpha")

# Written by Python 2.7.18's pickle (protocol 2 and the default protocol 0) from
# {'/opt/plugins': {'alpha': (1500, {1498: datetime(2024, 3, 5, 14, 30, 15, 123456)}),
#                   'beta': (1490, {})},
#  '/srv/caf\xc3\xa9': {'gamma': 7}}          (a UTF-8 folder name in a Python 2 str)
PY2_PROTOCOL_2 = (
    b"\x80\x02}q\x00(U\x0c/opt/pluginsq\x01}q\x02(U\x05alphaq\x03M\xdc\x05}q\x04M\xda\x05"
    b"cdatetime\ndatetime\nq\x05U\n\x07\xe8\x03\x05\x0e\x1e\x0f\x01\xe2@q\x06\x85q\x07Rq\x08s"
    b"\x86q\tU\x04betaq\nM\xd2\x05}q\x0b\x86q\x0cuU\n/srv/caf\xc3\xa9q\r}q\x0eU\x05gammaq\x0f"
    b"K\x07su."
)
PY2_PROTOCOL_0 = (
    b"(dp0\nS'/opt/plugins'\np1\n(dp2\nS'alpha'\np3\n(I1500\n(dp4\nI1498\ncdatetime\n"
    b"datetime\np5\n(S'\\x07\\xe8\\x03\\x05\\x0e\\x1e\\x0f\\x01\\xe2@'\np6\ntp7\nRp8\nstp9\n"
    b"sS'beta'\np10\n(I1490\n(dp11\ntp12\nssS'/srv/caf\\xc3\\xa9'\np13\n(dp14\nS'gamma'\n"
    b"p15\nI7\nss."
)
PY2_EXPIRY = datetime.datetime(2024, 3, 5, 14, 30, 15, 123456)


class Clocks:
    """A monotonic and a wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clocks():
    return Clocks()


@pytest.fixture
def state_file(tmp_path):
    return tmp_path / "shotgunEventDaemon.id"


def make_store(path, clocks=None, **options) -> StateStore:
    if clocks is not None:
        options.update(monotonic=lambda: clocks.mono, wall=lambda: clocks.wall)
    return StateStore(path, logger=logging.getLogger(LOGGER), **options)


def advance(progress, journal, position, opened=(), deadline=0.0, closed=()):
    """What a worker does: change the progress and record it, under the plugin's lock."""
    with progress.lock:
        for gap in opened:
            progress.gaps[gap] = deadline
        for gap in closed:
            progress.gaps.pop(gap, None)
        progress.position = position
        journal.record(opened=opened, closed=closed)


def reset(progress, journal, position):
    with progress.lock:
        progress.position = position
        journal.record(reset=True)


def journals(path: Path):
    return sorted(path.parent.glob(path.name + ".journal.*"))


def slot_files(path: Path):
    return sorted(path.parent.glob(path.name + ".positions.*"))


def errors(caplog):
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


# --------------------------------------------------------------------------- round trips


def test_checkpoint_round_trip_keeps_positions_and_gap_deadlines(state_file, clocks):
    store = make_store(state_file, clocks)
    assert store.load().source == "none"
    alpha, beta = PluginProgress(position=120), PluginProgress(position=7)
    journal = store.track(KEY, alpha)
    store.track(("/other", "beta"), beta)
    advance(alpha, journal, 130, opened=[125, 127], deadline=clocks.mono + 300)
    store.checkpoint()
    store.close()

    clocks.advance(60)
    loaded = make_store(state_file, clocks).load()

    assert loaded.source == "state file"
    assert loaded.plugins[KEY].position == 130
    assert loaded.plugins[KEY].gaps == {
        125: pytest.approx(clocks.mono + 240, abs=0.01),
        127: pytest.approx(clocks.mono + 240, abs=0.01),
    }
    assert loaded.plugins[("/other", "beta")] == PluginProgress(position=7)


def test_state_file_is_the_classic_pickle_with_naive_datetime_expiries(state_file, clocks):
    store = make_store(state_file, clocks)
    store.load()
    progress = PluginProgress(position=42, gaps={40: clocks.mono + 300})
    store.track(KEY, progress)
    store.close()

    data = state_file.read_bytes()
    protocols = {
        opcode.proto for opcode, _, _ in pickletools.genops(data) if opcode.name == "PROTO"
    }
    assert protocols == {2}
    expiry = datetime.datetime.fromtimestamp(clocks.wall + 300)
    assert pickle.loads(data) == {FOLDER: {"alpha": (42, {40: expiry})}}
    assert pickle.loads(data)[FOLDER]["alpha"][1][40].tzinfo is None


def _python2():
    """A working Python 2 interpreter to play the classic daemon, or None."""
    for candidate in ("/root/.pyenv/versions/2.7.18/bin/python2.7", shutil.which("python2.7")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run([candidate, "-c", "pass"], capture_output=True)
            if probe.returncode == 0:
                return candidate
    return None


PYTHON2 = _python2()


@pytest.mark.skipif(PYTHON2 is None, reason="no Python 2 to play the classic daemon")
def test_classic_daemon_on_python2_reads_the_state_file(state_file, clocks):
    python2 = PYTHON2
    store = make_store(state_file, clocks)
    store.load()
    store.track(KEY, PluginProgress(position=42, gaps={40: clocks.mono + 300}))
    store.close()
    code = (
        "import pickle, datetime, sys\n"
        "d = pickle.load(open(sys.argv[1], 'rb'))\n"
        "position, gaps = d['/studio/plugins']['alpha']\n"
        "print('%d %s' % (position, gaps[40].strftime('%Y-%m-%d %H:%M:%S')))\n"
    )
    result = subprocess.run(
        [python2, "-c", code, str(state_file)], capture_output=True, text=True, check=True
    )
    expiry = datetime.datetime.fromtimestamp(clocks.wall + 300)
    assert result.stdout.split(" ", 1) == ["42", expiry.strftime("%Y-%m-%d %H:%M:%S\n")]


# --------------------------------------------------------------------------- classic formats


def test_one_integer_text_file_is_every_plugins_position(state_file):
    state_file.write_text("98765\n")
    loaded = make_store(state_file).load()
    assert loaded.source == "state file"
    assert loaded.default_position == 98765
    assert loaded.progress_for("/any/folder", "anyPlugin") == PluginProgress(position=98765)


def test_folder_plugin_integer_pickle_is_read(state_file):
    state_file.write_bytes(pickle.dumps({FOLDER: {"alpha": 11, "beta": 12}}, protocol=2))
    loaded = make_store(state_file).load()
    assert loaded.plugins == {
        (FOLDER, "alpha"): PluginProgress(position=11),
        (FOLDER, "beta"): PluginProgress(position=12),
    }


def test_classic_python3_pickle_with_datetime_expiry_is_read(state_file, clocks):
    expiry = datetime.datetime.fromtimestamp(clocks.wall + 120)
    classic = {FOLDER: {"alpha": (500, {498: expiry, 499: expiry})}}
    state_file.write_bytes(pickle.dumps(classic, protocol=2))
    loaded = make_store(state_file, clocks).load()
    assert loaded.plugins[KEY].position == 500
    assert loaded.plugins[KEY].gaps == {
        498: pytest.approx(clocks.mono + 120, abs=0.01),
        499: pytest.approx(clocks.mono + 120, abs=0.01),
    }


@pytest.mark.parametrize("data", [PY2_PROTOCOL_2, PY2_PROTOCOL_0], ids=["protocol2", "protocol0"])
def test_pickle_written_by_the_classic_daemon_on_python2_is_read(state_file, clocks, data):
    state_file.write_bytes(data)
    loaded = make_store(state_file, clocks).load()
    assert loaded.source == "state file"
    deadline = clocks.mono + (PY2_EXPIRY.timestamp() - clocks.wall)
    assert loaded.plugins[("/opt/plugins", "alpha")].position == 1500
    assert loaded.plugins[("/opt/plugins", "alpha")].gaps == {1498: pytest.approx(deadline)}
    assert loaded.plugins[("/opt/plugins", "beta")] == PluginProgress(position=1490)
    assert loaded.plugins[("/srv/caf\u00e9", "gamma")] == PluginProgress(position=7)


def settled(plugins, present, configured, default_position=None):
    saved = SavedState(plugins=plugins, default_position=default_position)
    saved.settle_moved_folders(present, configured, logging.getLogger("test.state"))
    return saved


def test_a_plugin_whose_folder_moved_resumes_from_the_folder_no_longer_configured():
    plugins = {("/old/b", "alpha"): PluginProgress(position=55)}
    saved = settled(plugins, present=[("/new", "alpha")], configured=["/new"])
    assert saved.progress_for("/new", "alpha").position == 55


def test_a_namesake_in_a_folder_still_configured_is_another_plugin():
    plugins = {("/a", "notify"): PluginProgress(position=10), ("/b", "x"): PluginProgress(3)}
    present = [("/a", "notify"), ("/b2", "notify")]
    saved = settled(plugins, present, configured=["/a", "/b2"])
    assert saved.progress_for("/a", "notify").position == 10
    assert saved.progress_for("/b2", "notify") is None  # starts as a new plugin


def test_several_saved_folders_for_one_name_are_not_guessed_between(caplog):
    plugins = {
        ("/old/a", "alpha"): PluginProgress(position=40),
        ("/old/b", "alpha"): PluginProgress(position=55),
        ("/old/b", "beta"): PluginProgress(position=99),
    }
    with caplog.at_level(logging.WARNING, logger="test.state"):
        saved = settled(plugins, [("/new", "alpha"), ("/new", "beta")], configured=["/new"])
    assert saved.progress_for("/new", "alpha") is None
    assert saved.progress_for("/new", "beta").position == 99
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "/old/a (event 40), /old/b (event 55)" in warning
    assert "reset FOLDER/alpha --to ID" in warning


def test_two_new_plugins_of_one_name_share_no_moved_position(caplog):
    plugins = {("/old", "alpha"): PluginProgress(position=40)}
    with caplog.at_level(logging.WARNING, logger="test.state"):
        saved = settled(plugins, [("/x", "alpha"), ("/y", "alpha")], configured=["/x", "/y"])
    assert saved.progress_for("/x", "alpha") is None
    assert saved.progress_for("/y", "alpha") is None
    assert "under /x and /y" in caplog.text


def test_the_one_integer_position_is_every_new_plugins_without_a_moved_folder():
    saved = settled({}, [("/new", "gamma")], configured=["/new"], default_position=12)
    assert saved.progress_for("/new", "gamma").position == 12
    assert SavedState(plugins={}).progress_for("/new", "gamma") is None


# --------------------------------------------------------------------------- damaged files


def test_pickle_that_calls_os_system_is_refused_not_run(state_file, tmp_path, caplog):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state_file.write_bytes(pickle.dumps({FOLDER: {"alpha": Exploit()}}, protocol=2))
    loaded = make_store(state_file).load()

    assert not marker.exists()
    assert loaded.source == "none"
    assert loaded.plugins == {}
    assert any("system" in r.getMessage() for r in errors(caplog))
    assert len(list(tmp_path.glob(state_file.name + ".damaged-*"))) == 1


def _truncated_pickle() -> bytes:
    data = pickle.dumps({FOLDER: {"alpha": (300, {})}}, protocol=2)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "content",
    [b"", _truncated_pickle(), random.Random(7).randbytes(512), pickle.dumps([1, 2, 3])],
    ids=["empty", "truncated", "random-bytes", "wrong-shape"],
)
def test_damaged_state_file_falls_back_to_previous_copy(state_file, content, caplog):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    store.checkpoint()
    advance(progress, journal, 20)
    store.close()  # the state file says 20, its previous copy 10
    state_file.write_bytes(content)

    loaded = make_store(state_file).load()

    assert loaded.source == "previous copy"
    assert loaded.plugins[KEY].position == 10
    assert any(str(state_file) in r.getMessage() for r in errors(caplog))
    damaged = list(state_file.parent.glob(state_file.name + ".damaged-*"))
    assert [path.read_bytes() for path in damaged] == [content]
    assert not state_file.exists()


def test_damaged_file_and_damaged_previous_copy_start_from_the_journal(state_file, caplog):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    store.checkpoint()
    store.checkpoint()
    advance(progress, journal, 11)  # only in the journal
    state_file.write_bytes(b"\x80\x02garbage")
    store.prev_path.write_bytes(b"")

    loaded = make_store(state_file).load()

    assert loaded.source == "journal only"
    assert loaded.plugins[KEY].position == 11
    assert len(errors(caplog)) >= 3  # the file, its previous copy, and the summary
    assert len(list(state_file.parent.glob("*.damaged-*"))) == 2


def test_without_any_file_nothing_is_loaded_and_nothing_is_logged(state_file, caplog):
    loaded = make_store(state_file).load()
    assert loaded == SavedState(plugins={}, default_position=None, source="none")
    assert errors(caplog) == []


# --------------------------------------------------------------------------- the journal


def test_records_without_a_checkpoint_survive_a_crash(state_file, clocks):
    store = make_store(state_file, clocks)
    store.load()
    progress = PluginProgress(position=100)
    journal = store.track(KEY, progress)
    store.checkpoint()
    advance(progress, journal, 105, opened=[102, 103], deadline=clocks.mono + 300)
    advance(progress, journal, 110, closed=[102])
    # the process dies here: no checkpoint, no close

    loaded = make_store(state_file, clocks).load()

    assert loaded.source == "state file"
    assert loaded.plugins[KEY].position == 110
    assert loaded.plugins[KEY].gaps == {103: pytest.approx(clocks.mono + 300, abs=0.01)}


def journal_at_3_with_gap_2(state_file: Path) -> Path:
    """A store whose plugin is at event 3 with gap 2 (so a journal is written); its journal."""
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    advance(progress, journal, 3, opened=[2], deadline=time.monotonic() + 300)
    [journal_file] = journals(state_file)
    return journal_file


def test_torn_last_journal_line_is_ignored(state_file):
    journal_file = journal_at_3_with_gap_2(state_file)
    with open(journal_file, "ab") as handle:
        handle.write(b"R 1 0")  # no newline: the write was torn

    loaded = make_store(state_file).load()

    assert loaded.source == "journal only"
    assert loaded.plugins[KEY].position == 3
    assert set(loaded.plugins[KEY].gaps) == {2}


def test_journal_lines_with_ids_too_large_for_a_position_are_skipped(state_file):
    journal_file = journal_at_3_with_gap_2(state_file)
    with open(journal_file, "ab") as handle:
        handle.write(b"R 1 %d\n" % 2**64)
        handle.write(b"P 1 4 +%d@1.0\n" % 2**63)

    loaded = make_store(state_file).load()

    assert loaded.plugins[KEY].position == 3
    assert set(loaded.plugins[KEY].gaps) == {2}


def test_a_one_integer_state_too_large_for_a_position_is_damaged(state_file, caplog):
    state_file.write_text(f"{2**64}\n")

    loaded = make_store(state_file).load()

    assert (loaded.source, loaded.default_position) == ("none", None)
    assert any("too large for an event id" in r.getMessage() for r in errors(caplog))


def test_journal_never_moves_a_position_back_but_a_reset_does(state_file):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=50)
    journal = store.track(KEY, progress)
    advance(progress, journal, 60)
    advance(progress, journal, 55)  # a stale step must not move the saved position back
    assert make_store(state_file).load().plugins[KEY].position == 60

    reset(progress, journal, 30)
    assert make_store(state_file).load().plugins[KEY].position == 30
    advance(progress, journal, 35)
    assert make_store(state_file).load().plugins[KEY].position == 35


def test_journals_replay_in_generation_order_on_top_of_the_state_file(state_file, clocks):
    store = make_store(state_file, clocks)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    advance(progress, journal, 12, opened=[11], deadline=clocks.mono + 300)
    # a checkpoint that fails to write leaves the older journal in place
    original = state_module.StateStore._write_state_file

    def disk_full(self, state):
        raise OSError(errno.ENOSPC, "No space left on device")

    state_module.StateStore._write_state_file = disk_full
    try:
        store.checkpoint()
    finally:
        state_module.StateStore._write_state_file = original
    reset(progress, journal, 9)
    with progress.lock:
        progress.gaps.clear()
        journal.record(closed=[11])
    assert len(journals(state_file)) == 2

    loaded = make_store(state_file, clocks).load()

    assert loaded.plugins[KEY] == PluginProgress(position=9)


def test_checkpoint_racing_a_busy_worker_loses_nothing(state_file):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=0)
    journal = store.track(KEY, progress)
    done = threading.Event()

    def worker():
        deadline = time.monotonic() + 3600
        for event_id in range(1, 100_001):
            opened = [event_id] if event_id % 7 == 0 else []
            closed = [event_id - 70] if event_id % 7 == 0 and event_id > 70 else []
            advance(progress, journal, event_id, opened=opened, deadline=deadline, closed=closed)
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    checkpoints = 0
    while not done.is_set():
        store.checkpoint()
        checkpoints += 1
    thread.join()

    loaded = make_store(state_file).load()  # no final checkpoint: as after a kill -9

    assert checkpoints > 1
    assert loaded.plugins[KEY].position == progress.position == 100_000
    assert set(loaded.plugins[KEY].gaps) == set(progress.gaps)
    assert len(progress.gaps) == 10


def test_clean_close_leaves_only_the_state_file_and_its_previous_copy(state_file):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    for position in range(2, 50):
        advance(progress, journal, position)
        if position % 10 == 0:
            store.checkpoint()
    store.close()
    names = sorted(path.name for path in state_file.parent.iterdir())
    assert names == [state_file.name, state_file.name + ".prev"]


def test_untracked_plugin_leaves_the_state_file_at_the_next_checkpoint(state_file):
    store = make_store(state_file)
    store.load()
    store.track(KEY, PluginProgress(position=5))
    store.track((FOLDER, "beta"), PluginProgress(position=6))
    store.checkpoint()
    store.untrack(KEY)
    store.checkpoint()
    assert set(make_store(state_file).load().plugins) == {(FOLDER, "beta")}


def test_checkpoint_if_due_waits_for_a_change_and_the_save_interval(state_file, clocks):
    store = make_store(state_file, clocks, save_interval=5.0)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    assert store.checkpoint_if_due()  # the new plugin is a change
    advance(progress, journal, 2)
    clocks.advance(1)
    assert not store.checkpoint_if_due()  # changed, but the interval has not passed
    clocks.advance(4)
    assert store.checkpoint_if_due()
    assert pickle.loads(state_file.read_bytes())[FOLDER]["alpha"][0] == 2
    clocks.advance(10)
    assert not store.checkpoint_if_due()  # nothing changed since


def test_files_are_private_under_umask_022(state_file):
    old = os.umask(0o022)
    try:
        store = make_store(state_file)
        store.load()
        progress = PluginProgress(position=1)
        journal = store.track(KEY, progress)
        store.checkpoint()
        advance(progress, journal, 2)
        store.checkpoint()
        advance(progress, journal, 4, opened=[3], deadline=time.monotonic() + 300)
        paths = [state_file, store.prev_path, *journals(state_file), *slot_files(state_file)]
        assert len(paths) == 4
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in paths}
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o600}, modes


# --------------------------------------------------------------------------- disk faults


def _fail_journal_writes(monkeypatch, short: bool = False):
    """Make writes to journal files fail with ENOSPC (or write only half) until undone."""
    real_write = os.write

    def write(fd, data):
        if ".journal." in os.readlink(f"/proc/self/fd/{fd}"):
            if short:
                return real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_full_disk_on_the_journal_is_logged_once_and_never_raises(state_file, monkeypatch, caplog):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    store.checkpoint()
    _fail_journal_writes(monkeypatch)
    for position in range(2, 500):  # each step opens a gap, so each goes to the journal
        advance(progress, journal, position, opened=[10_000 + position], deadline=1e9)

    assert not store.healthy
    assert "No space left" in store.last_error
    assert len(errors(caplog)) == 1
    monkeypatch.undo()
    store.checkpoint()  # memory holds the progress: it reaches the state file now
    store.checkpoint()  # a whole interval without a failed write: healthy again
    assert store.healthy and store.last_error is None
    assert make_store(state_file).load().plugins[KEY].position == 499


def test_short_journal_write_is_repaired_by_a_snapshot_line(state_file, monkeypatch, clocks):
    store = make_store(state_file, clocks)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    advance(progress, journal, 2)
    _fail_journal_writes(monkeypatch, short=True)
    advance(progress, journal, 90, opened=[80, 85], deadline=clocks.mono + 300)
    monkeypatch.undo()
    advance(progress, journal, 91)  # not a checkpoint: the journal alone must be right

    loaded = make_store(state_file, clocks).load()

    assert loaded.plugins[KEY].position == 91
    assert set(loaded.plugins[KEY].gaps) == {80, 85}


def test_failed_checkpoint_keeps_the_last_good_file_and_retries(state_file, monkeypatch, caplog):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    store.checkpoint()
    good = state_file.read_bytes()

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    for position in range(2, 6):
        advance(progress, journal, position)
        store.checkpoint()
    assert state_file.read_bytes() == good
    assert not store.healthy and len(errors(caplog)) == 1
    assert [p.name for p in state_file.parent.iterdir() if ".tmp-" in p.name] == []
    assert make_store(state_file).load().plugins[KEY].position == 5  # from the journals

    monkeypatch.undo()
    store.checkpoint()
    assert store.healthy
    assert pickle.loads(state_file.read_bytes())[FOLDER]["alpha"][0] == 5
    assert any("written again" in r.getMessage() for r in caplog.records)


def _fail_checkpoints(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_gap_the_journal_could_not_record_holds_the_saved_position_before_it(
    state_file, monkeypatch, caplog
):
    """The disk is full: the line that opens gap 15 fails. The plugin goes on in memory, but
    what a kill leaves must not have passed 15, or its late event would never come."""
    caplog.set_level(logging.INFO, LOGGER)
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    store.checkpoint()
    _fail_journal_writes(monkeypatch)
    _fail_checkpoints(monkeypatch)
    advance(progress, journal, 20, opened=[15], deadline=time.monotonic() + 300)
    for position in range(21, 40):
        advance(progress, journal, position)
    store.checkpoint()
    assert progress.position == 39  # the plugin was not held up

    loaded = make_store(state_file).load()  # a kill -9 now
    assert loaded.plugins[KEY].position == 14
    held = [r for r in caplog.records if "stays before event id 15" in r.getMessage()]
    assert len(held) == 1  # said once, not once per event

    monkeypatch.undo()  # the disk has room again: the next line is a full snapshot
    advance(progress, journal, 40)
    loaded = make_store(state_file).load()
    assert loaded.plugins[KEY].position == 40
    assert set(loaded.plugins[KEY].gaps) == {15}
    assert any("moves on again" in r.getMessage() for r in caplog.records)


def test_a_final_checkpoint_that_fails_leaves_the_position_before_an_unrecorded_gap(
    state_file, monkeypatch
):
    """SIGTERM on a full disk: the final checkpoint fails too; the slots file is kept, and it
    holds the position before the gap, not the position in memory."""
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    store.checkpoint()
    _fail_journal_writes(monkeypatch)
    _fail_checkpoints(monkeypatch)
    advance(progress, journal, 12, opened=[11], deadline=time.monotonic() + 300)
    advance(progress, journal, 13)
    store.close()
    monkeypatch.undo()

    assert make_store(state_file).load().plugins[KEY].position == 10


def test_a_checkpoint_records_the_gaps_the_journal_could_not(state_file, monkeypatch):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    _fail_journal_writes(monkeypatch)
    advance(progress, journal, 20, opened=[15], deadline=time.monotonic() + 300)
    store.checkpoint()  # only the journal fails: the state file now holds gap 15
    advance(progress, journal, 21, opened=[21 - 1], deadline=time.monotonic() + 300)
    advance(progress, journal, 30)

    loaded = make_store(state_file).load()  # a kill -9: the later gap 20 is held before
    assert loaded.plugins[KEY].position == 20
    assert set(loaded.plugins[KEY].gaps) == {15}


def test_a_gap_delivered_or_given_up_no_longer_holds_the_position(state_file, monkeypatch):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=10)
    journal = store.track(KEY, progress)
    store.checkpoint()
    _fail_journal_writes(monkeypatch)
    advance(progress, journal, 20, opened=[15], deadline=time.monotonic() + 300)
    advance(progress, journal, 21, closed=[15])  # its late event was delivered

    assert make_store(state_file).load().plugins[KEY].position == 21


def test_a_reset_the_journal_cannot_take_changes_nothing(state_file, monkeypatch):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=50)
    journal = store.track(KEY, progress)
    advance(progress, journal, 60, opened=[55], deadline=time.monotonic() + 300)
    _fail_journal_writes(monkeypatch)

    assert not journal.reset_to(20)
    assert progress.position == 60 and set(progress.gaps) == {55}
    assert "No space left" in journal.problem
    monkeypatch.undo()
    assert journal.reset_to(20)
    loaded = make_store(state_file).load()
    assert loaded.plugins[KEY].position == 20 and loaded.plugins[KEY].gaps == {}


def test_vanished_state_folder_keeps_progress_in_memory_until_it_returns(tmp_path, caplog):
    folder = tmp_path / "state"
    folder.mkdir()
    state_file = folder / "events.id"
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    shutil.rmtree(folder)  # real OS errors, no injection: the volume went away
    for position in range(2, 100):
        advance(progress, journal, position, opened=[10_000 + position], deadline=1e9)
    store.checkpoint()
    assert not store.healthy
    assert len(errors(caplog)) == 2  # one for the journal, one for the checkpoint

    folder.mkdir()
    store.checkpoint()
    store.checkpoint()
    assert store.healthy
    assert make_store(state_file).load().plugins[KEY].position == 99


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_state_folder_is_a_fault_not_a_crash(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    store = make_store(folder / "events.id")
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    folder.chmod(0o500)
    try:
        advance(progress, journal, 2)
        store.checkpoint()
        assert not store.healthy
    finally:
        folder.chmod(0o700)


# --------------------------------------------------------------------------- kill -9

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from shotgun_events.state import PluginProgress, StateStore

    def no_fsync(fd):
        raise SystemExit("record() must not fsync")

    store = StateStore(sys.argv[1])
    store.load()
    progress = PluginProgress(position=0)
    journal = store.track(("/plugins", "alpha"), progress)
    os.fsync = no_fsync
    position = 0
    while True:
        position += 1
        with progress.lock:
            if position % 10 == 0:
                progress.gaps[position - 3] = time.monotonic() + 300
                opened = [position - 3]
            else:
                opened = []
            progress.position = position
            journal.record(opened=opened)
        if position % 500 == 0:
            print(position, flush=True)
    """
)


def test_kill_9_loses_no_recorded_position(state_file):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        printed = [int(child.stdout.readline()) for _ in range(20)]
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    printed += [int(line) for line in rest.split()]
    assert child.returncode == -signal.SIGKILL

    loaded = make_store(state_file).load()

    assert loaded.source == "journal only"
    progress = loaded.plugins[("/plugins", "alpha")]
    assert progress.position >= printed[-1]
    assert {position - 3 for position in range(10, printed[-1] + 1, 10)} <= set(progress.gaps)


# --------------------------------------------------------------------------- position slots


def test_a_run_killed_while_starting_keeps_the_positions_of_the_run_before(state_file):
    """Run A checkpoints at 10, then steps to 50 in its slots file only, and is killed. Run B
    loads, makes its own slots file, and is killed before its first checkpoint. Run C must
    still find 50: B's file must not have replaced A's."""
    run_a = make_store(state_file)
    run_a.load()
    progress = PluginProgress(position=10)
    journal = run_a.track(KEY, progress)
    run_a.checkpoint()  # the state file says 10; no journal is left
    for position in range(11, 51):
        advance(progress, journal, position)  # slots only
    # kill -9: no close

    run_b = make_store(state_file)
    assert run_b.load().plugins[KEY].position == 50
    run_b.track((FOLDER, "beta"), PluginProgress(position=None))  # its slots file is made
    # kill -9 before run B tracked alpha or wrote a checkpoint

    assert make_store(state_file).load().plugins[KEY].position == 50


def test_plain_steps_go_to_the_slots_file_not_the_journal_and_survive_a_crash(state_file):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=1)
    journal = store.track(KEY, progress)
    for position in range(2, 1001):
        advance(progress, journal, position)
    assert journals(state_file) == []  # no system call per event
    [slots] = slot_files(state_file)
    assert stat.S_IMODE(slots.stat().st_mode) == 0o600
    # No close(), no checkpoint: as after a kill -9.
    loaded = make_store(state_file).load()
    assert loaded.plugins[KEY].position == 1000
    assert loaded.source == "journal only"


def test_old_slot_files_are_read_then_removed_after_the_first_checkpoint(state_file):
    first = make_store(state_file)
    first.load()
    progress = PluginProgress(position=5)
    journal = first.track(KEY, progress)
    advance(progress, journal, 9)  # crash: no close
    second = make_store(state_file)
    loaded = second.load()
    assert loaded.plugins[KEY].position == 9
    [old] = slot_files(state_file)
    second.track(KEY, loaded.plugins[KEY])
    second.checkpoint()
    assert old not in slot_files(state_file)
    second.close()
    assert slot_files(state_file) == []  # a clean stop leaves only the state file and .prev


def test_an_untracked_plugin_does_not_come_back_from_its_slot(state_file):
    store = make_store(state_file)
    store.load()
    progress = PluginProgress(position=5)
    journal = store.track(KEY, progress)
    advance(progress, journal, 6)
    store.untrack(KEY)
    assert KEY not in make_store(state_file).load().plugins
