"""Per-plugin positions and gaps on disk: the classic pickle state file plus a journal.

The state file (``eventIdFile``) keeps the classic daemon's layout,
``{folder: {plugin: (position, {gap_id: expiry_datetime})}}``, written with pickle protocol 2,
so a site can switch between this daemon and the classic one in either direction. Between
checkpoints every progress step of every plugin is appended to a journal
(``<eventIdFile>.journal.<generation>``) with one ``os.write`` and no fsync: a kill -9 then
repeats only the events in hand, and a power loss at most ``save_interval`` seconds of work.

This module must never lose a position a plugin reached, never move a position past an event
the plugin has not had, never raise into a worker or the engine because of a disk fault or a
bad file, never execute code from a state file (the unpickler is restricted), and never delete
data it cannot read (a damaged file is moved aside, not removed).

Journal lines (one line per ``record()``; a line that does not parse, such as a torn last
line, is ignored)::

    K <n> ["<folder>", "<plugin>"]   binds the small integer n to a plugin key, once per file
    P <n> <position> [+<gap>@<expiry>]... [-<gap>]...   progress: replay keeps the highest position
    R <n> <position> [gap changes]   explicit reset: replay sets the position, even backwards
    S <n> <position> [+<gap>@<expiry>]...   full snapshot after a write fault: gaps replaced

``<expiry>`` is a gap's deadline as wall-clock epoch seconds. Gap changes ride on the position
line so that a torn write can never apply half of a record.

A position step without gap changes (nearly every event) does not go to the journal: it is
written into the plugin's slot of a memory-mapped file (slots.py), which costs no system
call. Loading takes, per plugin, the highest of the state file, the journals and the slots.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import io
import json
import logging
import math
import os
import pickle
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

from .slots import MAX_EVENT_ID, Partial, PositionSlots, Slot, read_slots

PluginKey = Tuple[str, str]

#: Every file this module creates is private to the daemon's user, whatever the umask.
PRIVATE_MODE = 0o600
#: Written so that the classic daemon reads the file even on Python 2.
PICKLE_PROTOCOL = 2

SOURCE_STATE_FILE = "state file"
SOURCE_PREVIOUS = "previous copy"
SOURCE_JOURNAL = "journal only"
SOURCE_NONE = "none"

#: Starts a write that follows a short (torn) one, so that the torn fragment never parses.
_TORN_MARK = "~\n"
_TEN_YEARS = 10 * 365 * 24 * 3600.0


@dataclass
class PluginProgress:
    """One plugin's progress: the last event it is done with and the gaps at or below it.

    Changed only under ``lock``, together with the matching ``ProgressJournal.record()``,
    so that a checkpoint copying it under the same lock never misses a change.
    """

    position: Optional[int] = None
    gaps: Dict[int, float] = field(default_factory=dict)  # gap id -> deadline (time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: The event the plugin was in the middle of when the daemon died, and which of its
    #: callbacks had finished (from the slots file; never in the state file).
    partial: Optional[Partial] = field(default=None, compare=False)


@dataclass
class SavedState:
    """What ``StateStore.load()`` found, and where it came from (``source``)."""

    plugins: Dict[PluginKey, PluginProgress]
    default_position: Optional[int] = None  # from the one-integer format
    source: str = SOURCE_NONE
    #: Plugins that resume from a position saved under another folder (new key -> saved
    #: key), decided once at start by ``settle_moved_folders``.
    moved: Dict[PluginKey, PluginKey] = field(default_factory=dict)

    def progress_for(self, folder: str, plugin: str) -> Optional[PluginProgress]:
        """The saved progress a plugin should resume from, or None to start it "now".

        Its own saved progress; else the one a moved folder left (``settle_moved_folders``
        decided which); else the one-integer format's position for every plugin.
        """
        key = (folder, plugin)
        exact = self.plugins.get(key)
        if exact is not None:
            return exact
        if key in self.moved:
            return self.plugins[self.moved[key]]
        if self.default_position is not None:
            return PluginProgress(position=self.default_position)
        return None

    def settle_moved_folders(
        self,
        present: Iterable[PluginKey],
        configured: Iterable[str],
        logger: logging.Logger,
    ) -> None:
        """Decide which plugins resume from a position saved under a folder that moved.

        A plugin without progress of its own takes the progress saved for its name under a
        folder that is *no longer configured* (the folder was moved, or its path spelt
        another way), when exactly one such saved folder and exactly one such plugin exist.
        A folder still configured keeps its own plugins' progress: a namesake there is
        another plugin. When several saved folders, or several new plugins, could match,
        nothing is guessed: those plugins start as new plugins do, with one warning that
        names the saved folders (``reset FOLDER/NAME --to ID`` resumes one by hand).
        """
        folders = set(configured)
        claimants: Dict[str, List[PluginKey]] = {}
        for key in present:
            if key not in self.plugins:
                claimants.setdefault(key[1], []).append(key)
        for name, keys in sorted(claimants.items()):
            saved = sorted(k for k in self.plugins if k[1] == name and k[0] not in folders)
            if len(saved) == 1 and len(keys) == 1:
                self.moved[keys[0]] = saved[0]
                logger.info(
                    "Plugin %s/%s resumes from the position saved for %s/%s (event %s): its "
                    "folder is no longer configured, it was moved or spelt another way.",
                    *keys[0],
                    *saved[0],
                    self.plugins[saved[0]].position,
                )
            elif saved:
                logger.warning(_not_guessed(name, keys, saved, self.plugins))


def _not_guessed(
    name: str,
    plugins: List[PluginKey],
    saved: List[PluginKey],
    progress: Dict[PluginKey, PluginProgress],
) -> str:
    """The warning for new plugins that several saved folders (or each other) could match."""
    return (
        f"Plugin {name} has no saved position under "
        f"{' and '.join(folder for folder, _ in sorted(plugins))}, and positions were saved "
        "for a plugin of that name under folders no longer configured: "
        + ", ".join(f"{folder} (event {progress[(folder, n)].position})" for folder, n in saved)
        + f". Which one it was is not guessed: {'it starts' if len(plugins) == 1 else 'they start'}"
        f" as a new plugin; 'shotgunEventDaemon reset FOLDER/{name} --to ID' resumes one from "
        "a saved position."
    )


class ProgressJournal:
    """The handle a plugin's worker records its progress through (see ``StateStore.track``).

    What it keeps on disk never claims more than is true: a position passes a gap only once
    the gap is on record (a journal line or a checkpoint), so while the state folder cannot
    be written the saved position waits before the first gap not on record, and a crash
    then delivers the events after it again instead of losing the late one.
    """

    __slots__ = (
        "_detached",
        "_held_at",
        "_resync",
        "_slot",
        "_store",
        "_unrecorded",
        "index",
        "key",
        "progress",
    )

    def __init__(
        self, store: StateStore, key: PluginKey, index: int, progress: PluginProgress
    ) -> None:
        self._store = store
        self.key = key
        self.index = index
        self.progress = progress
        #: Set after a failed write: the next line is a full snapshot, not a delta.
        self._resync = False
        self._detached = False
        #: Where a plain position step goes (see slots.py); None: everything is journaled.
        self._slot: Optional[Slot] = None
        #: Gaps opened whose journal line failed (guarded by ``progress.lock``): until a
        #: snapshot line or a checkpoint records them, the slot stays below the lowest.
        self._unrecorded: Set[int] = set()
        #: The gap the saved position waits before, once said (None: it does not wait).
        self._held_at: Optional[int] = None

    def record(
        self, *, opened: Iterable[int] = (), closed: Iterable[int] = (), reset: bool = False
    ) -> bool:
        """Save the progress's current position and the given gap changes.

        The caller holds ``progress.lock`` and has already changed the progress. Returns
        whether the change is on record (False when the journal could not be written: the
        store logged it once and keeps the progress in memory until a checkpoint). Never
        raises for a disk fault.
        """
        position = self.progress.position
        slot = self._slot
        if slot is not None and not (opened or closed or reset or self._resync):
            if not self._detached:
                slot.advance(position)
                self._store._changed = True
            return True
        line = f"{'R' if reset else 'P'} {self.index} {'-' if position is None else position}"
        if opened or closed:
            line += self._store._gap_fields(self.progress.gaps, opened, closed)
        # The journal line first: a gap must be on record before a position passes it.
        written = self._store._append(self, line + "\n")
        if not written:
            self._unrecorded.update(opened)
        if slot is not None and not self._detached:
            if not reset:
                slot.advance(self.savable(position))
            elif written:  # a reset the journal does not hold must not half-happen
                slot.set(position)
        return written

    def savable(self, position: Optional[int]) -> Optional[int]:
        """The highest position the slot may show: ``position``, or just before the lowest
        open gap that is not on record yet (said once per wait). Under ``progress.lock``."""
        unrecorded = self._unrecorded
        if unrecorded:
            unrecorded.intersection_update(self.progress.gaps)  # delivered or expired: free
        if not unrecorded or position is None or position < min(unrecorded):
            if self._held_at is not None:
                self._held_at = None
                self._store._hold_ended(self.key)
            return position
        gap = min(unrecorded)
        if self._held_at != gap:
            self._held_at = gap
            self._store._holding(self.key, gap)
        return gap - 1

    def reset_to(self, position: int) -> bool:
        """An operator's reset: the position moves (even backwards) and every gap is dropped,
        if the journal takes it; if not, nothing changes and the answer is False."""
        progress = self.progress
        with progress.lock:
            before, gaps = progress.position, dict(progress.gaps)
            progress.position = position
            progress.gaps.clear()
            if self.record(closed=sorted(gaps), reset=True):
                return True
            progress.position = before
            progress.gaps.update(gaps)
            return False

    @property
    def problem(self) -> str:
        """Why the last write failed, for an operator's answer."""
        return self._store.last_error or "the state folder cannot be written"

    def event_started(self, event_id: int, signature: int, done_before: int = 0) -> None:
        """A delivery starts (a memory write): forget what an earlier run of it finished,
        except ``done_before`` (callbacks that finished before a restart)."""
        slot = self._slot
        if slot is not None and not self._detached:
            slot.start_event(event_id, signature, done_before)

    def callback_done(self, event_id: int, index: int, signature: int) -> None:
        """One callback of a plugin finished on the event in hand (a memory write), so that
        after a kill only the callbacks that had not finished run again."""
        slot = self._slot
        if slot is not None and not self._detached:
            slot.callback_done(event_id, index, signature)

    def snapshot_line(self) -> str:
        """The whole progress as one ``S`` line (written after a fault lost some lines)."""
        position = self.progress.position
        gaps = self._store._gap_fields(self.progress.gaps, sorted(self.progress.gaps), ())
        return f"S {self.index} {'-' if position is None else position}{gaps}\n"


@dataclass
class _Saved:
    """A plugin's progress while loading, with gap expiries as wall-clock epoch seconds."""

    position: Optional[int] = None
    gaps: Dict[int, float] = field(default_factory=dict)
    partial: Optional[Partial] = None


_Entries = Dict[PluginKey, _Saved]


class _DamagedStateError(Exception):
    """A state file's content cannot be used; the message says what is wrong with it."""


class StateStore:
    """Loads and saves every plugin's progress: the state file, its previous copy, journals.

    Thread use: workers call ``ProgressJournal.record()`` concurrently; one thread (the
    engine) calls ``load``, ``track``, ``untrack`` and the checkpoints.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        save_interval: float = 1.0,
        logger: Optional[logging.Logger] = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.save_interval = save_interval
        self.log = logger or logging.getLogger("state")
        self._monotonic = monotonic
        self._wall = wall
        self.last_error: Optional[str] = None
        self._faults: Dict[str, str] = {}
        self._fault_lock = threading.Lock()
        self._lock = threading.Lock()  # guards the tracked plugins and their indexes
        self._tracked: Dict[PluginKey, ProgressJournal] = {}
        self._indexes: Dict[PluginKey, int] = {}
        self._checkpoint_lock = threading.Lock()
        self._last_checkpoint = -math.inf
        self._main_is_good = False  # only a file known to be good becomes the previous copy
        # The journal writer; everything below is guarded by _journal_lock.
        self._journal_lock = threading.Lock()
        self._generation: Optional[int] = None
        self._fd: Optional[int] = None
        self._headed: Set[PluginKey] = set()
        self._torn = False
        self._changed = False
        self._generations: Set[int] = set()  # journal files this store may delete
        self._writes_ok = 0
        self._writes_failed = 0
        self._slots: Optional[PositionSlots] = None
        #: The loaded state said something: never replace it with an empty one.
        self._loaded_anything = False
        #: Slot files of earlier runs: read by load(), deleted after the first checkpoint.
        self._old_slot_files: List[Path] = []

    # ------------------------------------------------------------ status

    @property
    def healthy(self) -> bool:
        """False while journal writes or checkpoints fail (progress is then only in memory)."""
        return not self._faults

    @property
    def prev_path(self) -> Path:
        return self.path.with_name(self.path.name + ".prev")

    # ------------------------------------------------------------ tracking

    def track(self, key: PluginKey, progress: PluginProgress) -> ProgressJournal:
        """Start saving a plugin's progress; returns the journal its worker records through."""
        with self._lock:
            index = self._indexes.setdefault(key, len(self._indexes) + 1)
            old = self._tracked.get(key)
            journal = ProgressJournal(self, key, index, progress)
            if old is not None:
                old._detached = True
                # What the old handle failed to write is still missing from the disk.
                journal._resync = old._resync
                journal._unrecorded = old._unrecorded
            self._tracked[key] = journal
            journal._slot = self._assign_slot(key)
        if journal._slot is not None:
            with progress.lock:
                journal._slot.set(progress.position)
        with self._journal_lock:
            self._changed = True
        return journal

    def _assign_slot(self, key: PluginKey) -> Optional[Slot]:
        """A position slot for a plugin; None (journal only) if the slots file cannot be made."""
        try:
            if self._slots is None:
                self._slots = self._new_slots_file()
            return self._slots.assign(key)
        except (OSError, ValueError) as exc:
            self._fault("journal", f"cannot map the positions file next to {self.path}: {exc}")
            return None

    def _new_slots_file(self) -> PositionSlots:
        """A slots file under a name no file has now. An earlier run's file (killed) may be
        the only record of its last positions until this run's first checkpoint: reusing
        its name would empty it, and a kill before that checkpoint would lose them."""
        run = self._current_generation()
        while True:
            path = self.path.with_name(f"{self.path.name}.positions.{run}")
            try:
                return PositionSlots(path, PRIVATE_MODE)
            except FileExistsError:
                run += 1

    def untrack(self, key: PluginKey) -> None:
        """Stop saving a plugin (file removed); it leaves the state file at the next checkpoint."""
        with self._lock:
            journal = self._tracked.pop(key, None)
        if journal is not None:
            journal._detached = True
            if journal._slot is not None:
                journal._slot.clear()
            with self._journal_lock:
                self._changed = True

    # ------------------------------------------------------------ the journal

    def _gap_fields(
        self, gaps: Dict[int, float], opened: Iterable[int], closed: Iterable[int]
    ) -> str:
        """`` +gap@expiry`` for opened gaps (deadlines read from ``gaps``), `` -gap`` for closed."""
        wall = self._wall()
        offset = wall - self._monotonic()
        parts = []
        for gap in opened:
            deadline = gaps.get(gap)
            if deadline is not None:
                parts.append(f" +{gap:d}@{_finite(deadline + offset, wall):.3f}")
        parts.extend(f" -{gap:d}" for gap in closed)
        return "".join(parts)

    def _append(self, journal: ProgressJournal, line: str) -> bool:
        """Hand one record to the operating system: one ``os.write``, no fsync, never raises.
        True when the whole line was written (after a failure: a snapshot of everything)."""
        with self._journal_lock:
            self._changed = True
            if journal._detached:
                return False
            if journal._resync:
                line = journal.snapshot_line()
            if journal.key not in self._headed:
                line = f"K {journal.index} {json.dumps(list(journal.key))}\n{line}"
            if self._torn:
                line = _TORN_MARK + line
            data = line.encode("utf-8")
            try:
                fd = self._fd if self._fd is not None else self._open_journal()
                written = os.write(fd, data)
            except OSError as exc:
                self._journal_failed(journal, exc)
                return False
            if written != len(data):
                self._torn = True
                self._journal_failed(journal, OSError(errno.ENOSPC, "short write"))
                return False
            self._torn = False
            self._headed.add(journal.key)
            journal._resync = False
            journal._unrecorded.clear()  # the line was a snapshot: every gap is on record
            self._writes_ok += 1
            return True

    def _journal_failed(self, journal: ProgressJournal, exc: OSError) -> None:
        journal._resync = True
        self._writes_failed += 1
        self._fault(
            "journal",
            f"cannot append to the journal {self._journal_path(self._current_generation())}: "
            f"{exc}; progress is kept in memory and saved at the next checkpoint",
        )

    def _holding(self, key: PluginKey, gap: int) -> None:
        self.log.warning(
            "Plugin %s/%s: its saved position stays before event id %d, a gap the journal "
            "could not record; the plugin goes on, and a restart before the state folder is "
            "writable again delivers the events after that id again (none is lost).",
            *key,
            gap,
        )

    def _hold_ended(self, key: PluginKey) -> None:
        self.log.info("Plugin %s/%s: its saved position moves on again.", *key)

    def _journal_path(self, generation: int) -> Path:
        return self.path.with_name(f"{self.path.name}.journal.{generation}")

    def _open_journal(self) -> int:
        generation = self._current_generation()
        fd = os.open(
            self._journal_path(generation),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
            PRIVATE_MODE,
        )
        try:
            os.fchmod(fd, PRIVATE_MODE)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._generations.add(generation)
        return fd

    def _current_generation(self) -> int:
        """The journal generation being written; found from the folder if ``load`` did not run."""
        if self._generation is None:
            existing = [generation for generation, _ in self._journal_files()]
            self._generation = max(existing, default=0) + 1
        return self._generation

    def _journal_files(self) -> List[Tuple[int, Path]]:
        """Journal files next to the state file, oldest generation first."""
        prefix = self.path.name + ".journal."
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return []
        found = []
        for name in names:
            suffix = name[len(prefix) :]
            if name.startswith(prefix) and suffix.isdigit():
                found.append((int(suffix), self.path.parent / name))
        return sorted(found)

    def _switch_generation(self) -> int:
        """Send every later record to a new journal file; returns the new generation."""
        with self._journal_lock:
            generation = self._current_generation() + 1
            self._close_journal()
            self._generation = generation
            self._headed = set()
            self._changed = False
            return generation

    def _close_journal(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                self.log.warning("Closing the journal failed: %s", exc)

    # ------------------------------------------------------------ checkpoints

    def checkpoint_if_due(self) -> bool:
        """Checkpoint if something changed (or a fault is pending) and ``save_interval`` passed."""
        if not (self._changed or self._faults):
            return False
        if self._monotonic() - self._last_checkpoint < self.save_interval:
            return False
        self.checkpoint()
        return True

    def checkpoint(self) -> None:
        """Write every tracked plugin's progress to the state file; never raises for a disk fault.

        The journal switches generation *before* the progress is copied, and every change is
        made and recorded under the plugin's lock, so each change is either in the copy or in
        the new journal: deleting the older journals afterwards loses nothing.
        """
        with self._checkpoint_lock:
            self._last_checkpoint = self._monotonic()
            if self._loaded_anything and not self._tracked:
                return  # stopped before any plugin was tracked: keep the loaded file as it is
            generation = self._switch_generation()
            snapshot, unrecorded = self._copy_progress()
            try:
                self._write_state_file(_classic_state(snapshot))
            except OSError as exc:
                with self._journal_lock:
                    self._changed = True
                self._fault(
                    "checkpoint",
                    f"cannot write the state file {self.path}: {exc}; the last good file and "
                    "the journals are kept, retrying at every checkpoint",
                )
                return
            self._main_is_good = True
            self._now_on_record(unrecorded)
            self._recovered("checkpoint", "The state file %s is written again.")
            self._delete_journals_before(generation)
            self._delete_old_slot_files()
            self._remap_slots_if_gone()
            self._settle_journal_fault()

    def close(self) -> None:
        """Final checkpoint; on success no journal is left, only the state file and ``.prev``."""
        for _ in range(3):
            self.checkpoint()
            with self._journal_lock:
                quiet = self._fd is None  # nothing recorded since the checkpoint's switch
            if quiet or "checkpoint" in self._faults:
                break
        with self._journal_lock:
            self._close_journal()
        if self._slots is not None:
            with self._lock:
                for journal in self._tracked.values():
                    journal._detached = True
            self._slots.close(delete="checkpoint" not in self._faults)
            self._slots = None

    def _remap_slots_if_gone(self) -> None:
        """If the slots file vanished (its folder was removed and came back), make a new one:
        positions in memory are safe in the state file just written, and later steps must
        survive a kill again."""
        if self._slots is None or self._slots.path.exists():
            return
        self._slots.close(delete=False)
        self._slots = None
        with self._lock:
            journals = list(self._tracked.values())
            for journal in journals:
                journal._slot = self._assign_slot(journal.key)
        for journal in journals:
            if journal._slot is not None:
                with journal.progress.lock:
                    journal._slot.set(journal.savable(journal.progress.position))

    def _now_on_record(self, unrecorded: Dict[ProgressJournal, Set[int]]) -> None:
        """Gaps the journal failed to record are in the state file just written: positions
        may pass them again (their slots move at the plugins' next step)."""
        for journal, gaps in unrecorded.items():
            with journal.progress.lock:
                journal._unrecorded.difference_update(gaps)

    def _delete_old_slot_files(self) -> None:
        while self._old_slot_files:
            _remove_quietly(self._old_slot_files.pop())

    def _copy_progress(
        self,
    ) -> Tuple[
        Dict[PluginKey, Tuple[Optional[int], Dict[int, float]]],
        Dict[ProgressJournal, Set[int]],
    ]:
        """Each tracked plugin's position and gaps (as wall-clock expiries), under its lock;
        and the gaps in the copy that the journal failed to record."""
        with self._lock:
            journals = list(self._tracked.values())
        copied = {}
        unrecorded: Dict[ProgressJournal, Set[int]] = {}
        for journal in journals:
            progress = journal.progress
            with progress.lock:
                copied[journal.key] = (progress.position, dict(progress.gaps))
                if journal._unrecorded:
                    unrecorded[journal] = set(journal._unrecorded)
        wall = self._wall()
        offset = wall - self._monotonic()
        snapshot = {
            key: (
                position,
                {gap: _finite(deadline + offset, wall) for gap, deadline in gaps.items()},
            )
            for key, (position, gaps) in copied.items()
        }
        return snapshot, unrecorded

    def _write_state_file(self, state: dict) -> None:
        """Temp file, fsync, keep the current good file as ``.prev``, rename, fsync the folder."""
        data = pickle.dumps(state, protocol=PICKLE_PROTOCOL)
        fd, temp = tempfile.mkstemp(prefix=self.path.name + ".tmp-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), PRIVATE_MODE)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if self._main_is_good:
                self._keep_previous_copy()
            os.replace(temp, self.path)
        except BaseException:
            _remove_quietly(Path(temp))
            raise
        _fsync_folder(self.path.parent)

    def _keep_previous_copy(self) -> None:
        """Make the current (good) state file the previous copy, without a moment with neither."""
        if not self.path.exists():
            return
        staging = self.path.with_name(self.path.name + ".prev-new")
        _remove_quietly(staging)
        try:
            os.link(self.path, staging)
            # A file the classic daemon wrote under umask 022 is readable by everyone; it
            # is private from now on (the link shares the inode: the state file is about to
            # be replaced anyway).
            os.chmod(staging, PRIVATE_MODE)
        except OSError:  # a file system without hard links: copy instead
            _remove_quietly(staging)
            _copy_private(self.path, staging)
        os.replace(staging, self.prev_path)

    def _delete_journals_before(self, generation: int) -> None:
        with self._journal_lock:
            old = sorted(g for g in self._generations if g < generation)
        for number in old:
            try:
                os.unlink(self._journal_path(number))
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.log.warning("Cannot delete the old journal (retrying later): %s", exc)
                continue
            with self._journal_lock:
                self._generations.discard(number)

    # ------------------------------------------------------------ faults

    def _fault(self, kind: str, message: str) -> None:
        """Log a fault once per episode (not once per event) and mark the store unhealthy."""
        with self._fault_lock:
            new = kind not in self._faults
            self._faults[kind] = message
            self.last_error = message
        if new:
            self.log.error("State %s fault: %s.", kind, message)

    def _recovered(self, kind: str, message: str) -> None:
        with self._fault_lock:
            if self._faults.pop(kind, None) is None:
                return
            self.last_error = next(iter(self._faults.values()), None)
        self.log.warning(message, self.path)

    def _settle_journal_fault(self) -> None:
        """A journal fault ends after a checkpoint interval without a failed write."""
        with self._journal_lock:
            clean = self._writes_failed == 0
            self._writes_ok = self._writes_failed = 0
        if clean:
            self._recovered("journal", "The journal next to %s is written again.")

    # ------------------------------------------------------------ loading

    def load(self) -> SavedState:
        """Read the state file (or its previous copy), then replay every journal on top.

        Never raises for bad content: damaged files are moved aside with an ERROR log.
        """
        self._remove_stale_temp_files()
        for path in (self.path, self.prev_path):
            _make_private(path)
        entries, default_position, source = self._load_base()
        journals = self._journal_files()
        for _, journal_path in journals:
            self._replay_file(journal_path, entries)
        for slot_path in self._slot_files():
            for key, record in read_slots(slot_path).items():
                saved = entries.setdefault(key, _Saved())
                saved.position = _highest(saved.position, record.position)
                if record.partial is not None and record.partial.event_id > saved.position:
                    saved.partial = record.partial
            self._old_slot_files.append(slot_path)
        with self._journal_lock:
            self._close_journal()  # records made before load() stay in their (older) file
            self._headed = set()
            self._generations.update(generation for generation, _ in journals)
            self._generation = max((g for g, _ in journals), default=0) + 1
        if source == SOURCE_NONE and entries:
            source = SOURCE_JOURNAL
        self._loaded_anything = bool(entries) or default_position is not None
        return SavedState(self._to_progress(entries), default_position, source)

    def _load_base(self) -> Tuple[_Entries, Optional[int], str]:
        status, parsed = self._read_state_file(self.path)
        if status == "ok":
            assert parsed is not None
            self._main_is_good = True
            return parsed[0], parsed[1], SOURCE_STATE_FILE
        prev_status, prev_parsed = self._read_state_file(self.prev_path)
        if prev_status == "ok":
            assert prev_parsed is not None
            if status == "missing":
                self.log.error("The state file %s is missing.", self.path)
            self.log.error(
                "Positions come from the previous copy %s; events after them are delivered "
                "again, none is skipped.",
                self.prev_path,
            )
            return prev_parsed[0], prev_parsed[1], SOURCE_PREVIOUS
        if status != "missing" or prev_status != "missing":
            self.log.error(
                "Neither the state file %s nor its previous copy can be used; positions come "
                "from the journals if any, else every plugin starts at the newest event.",
                self.path,
            )
        return {}, None, SOURCE_NONE

    def _read_state_file(self, path: Path) -> Tuple[str, Optional[Tuple[_Entries, Optional[int]]]]:
        """("ok", parsed), ("missing", None) or ("damaged", None) after moving the file aside."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return "missing", None
        except OSError as exc:
            reason = f"cannot be read ({exc})"
        else:
            try:
                return "ok", parse_state_file(data)
            except _DamagedStateError as exc:
                reason = str(exc)
        aside = self._move_aside(path)
        self.log.error(
            "The state file %s is unusable: %s. %s",
            path,
            reason,
            f"It was moved to {aside}." if aside else "It could not be moved aside.",
        )
        return "damaged", None

    def _move_aside(self, path: Path) -> Optional[Path]:
        """Rename a damaged file to ``<name>.damaged-<timestamp>``; data is never deleted."""
        stamp = _dt.datetime.fromtimestamp(self._wall()).strftime("%Y%m%d-%H%M%S")
        for attempt in range(100):
            suffix = f".damaged-{stamp}" + (f"-{attempt}" if attempt else "")
            aside = path.with_name(path.name + suffix)
            if aside.exists():
                continue
            try:
                os.rename(path, aside)
            except OSError as exc:
                self.log.error("Cannot move the damaged file %s aside: %s", path, exc)
                return None
            return aside
        return None

    def _slot_files(self) -> List[Path]:
        prefix = self.path.name + ".positions."
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return []
        return [self.path.parent / n for n in sorted(names) if n.startswith(prefix)]

    def _replay_file(self, path: Path, entries: _Entries) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.log.error("Cannot read the journal %s: %s; it is skipped.", path, exc)
            return
        bad = replay_journal(data, entries)
        if bad:
            self.log.warning("Ignored %d unreadable line(s) in the journal %s.", bad, path)

    def _to_progress(self, entries: _Entries) -> Dict[PluginKey, PluginProgress]:
        """Wall-clock gap expiries -> monotonic deadlines; plugins that never ran are dropped."""
        offset = self._monotonic() - self._wall()
        return {
            key: PluginProgress(
                position=saved.position,
                gaps={gap: expiry + offset for gap, expiry in saved.gaps.items()},
                partial=saved.partial
                if saved.partial is not None and saved.partial.event_id > saved.position
                else None,
            )
            for key, saved in entries.items()
            if saved.position is not None
        }

    def _remove_stale_temp_files(self) -> None:
        """Half-written temp files from a crash; the journals hold what they would have."""
        prefix = self.path.name + ".tmp-"
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) or name == self.path.name + ".prev-new":
                _remove_quietly(self.path.parent / name)


# --------------------------------------------------------------------------- file formats


def parse_state_file(data: bytes) -> Tuple[_Entries, Optional[int]]:
    """Read any state file format: (per-plugin progress, position for every plugin or None).

    Raises ``_DamagedStateError`` with a reason a person can act on.
    """
    if not data.strip():
        raise _DamagedStateError("the file is empty")
    text = data.strip()
    if text.isdigit():
        try:
            return {}, _id_from_text(text)
        except ValueError:
            raise _DamagedStateError(f"{text[:40]!r} is too large for an event id") from None
    try:
        loaded = _StateUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _ForbiddenGlobalError as exc:
        raise _DamagedStateError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure of a bad pickle means "damaged"
        raise _DamagedStateError(
            f"not a readable state pickle ({type(exc).__name__}: {exc})"
        ) from None
    return _entries_from_classic(loaded), None


def _entries_from_classic(loaded: object) -> _Entries:
    """``{folder: {plugin: (position, {gap: datetime})}}`` or ``{folder: {plugin: int}}``."""
    if not isinstance(loaded, dict):
        raise _DamagedStateError(
            f"expected a dict of plugin folders, found {type(loaded).__name__}"
        )
    entries: _Entries = {}
    for folder, plugins in loaded.items():
        if not isinstance(plugins, dict):
            raise _DamagedStateError(
                f"folder {folder!r} holds {type(plugins).__name__}, not a dict"
            )
        for plugin, state in plugins.items():
            key = (_text(folder), _text(plugin))
            entries[key] = _saved_from_classic(key, state)
    return entries


def _saved_from_classic(key: PluginKey, state: object) -> _Saved:
    if _is_event_id(state):
        return _Saved(position=state)  # type: ignore[arg-type]
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise _DamagedStateError(f"plugin {key} holds {state!r}, not (position, gaps)")
    position, gaps = state
    if not (position is None or _is_event_id(position)) or not isinstance(gaps, dict):
        raise _DamagedStateError(f"plugin {key} holds {state!r}, not (position, gaps)")
    saved = _Saved(position=position)
    for gap, expiry in gaps.items():
        if not _is_event_id(gap) or not isinstance(expiry, _dt.datetime):
            raise _DamagedStateError(
                f"plugin {key} has a gap {gap!r}: {expiry!r}, not id: datetime"
            )
        saved.gaps[gap] = _epoch(expiry)
    return saved


def _classic_state(
    snapshot: Dict[PluginKey, Tuple[Optional[int], Dict[int, float]]],
) -> Dict[str, Dict[str, tuple]]:
    """The classic layout, gap expiries as naive local datetimes like the classic daemon's."""
    state: Dict[str, Dict[str, tuple]] = {}
    for (folder, plugin), (position, gaps) in sorted(snapshot.items()):
        if position is None:
            continue
        expiries = {gap: _dt.datetime.fromtimestamp(expiry) for gap, expiry in gaps.items()}
        state.setdefault(folder, {})[plugin] = (position, expiries)
    return state


def replay_journal(data: bytes, entries: _Entries) -> int:
    """Apply a journal's lines to ``entries`` in order; returns how many lines were unusable.

    The part after the last newline is a torn write and is ignored silently.
    """
    lines = data.decode("utf-8", errors="replace").split("\n")
    lines.pop()
    keys: Dict[str, PluginKey] = {}
    bad = 0
    for line in lines:
        try:
            _apply_line(line, keys, entries)
        except (ValueError, KeyError, TypeError):
            bad += 1
    return bad


def _apply_line(line: str, keys: Dict[str, PluginKey], entries: _Entries) -> None:
    kind, index, rest = line.split(" ", 2)
    if kind == "K":
        folder, plugin = json.loads(rest)
        if not (isinstance(folder, str) and isinstance(plugin, str)):
            raise TypeError("a plugin key is two strings")
        keys[index] = (folder, plugin)
        return
    if kind not in ("P", "R", "S"):
        raise ValueError(f"unknown line kind {kind!r}")
    key = keys[index]
    fields = rest.split(" ")
    position = None if fields[0] == "-" else _id_from_text(fields[0])
    opened, closed = _parse_gap_fields(fields[1:])
    saved = entries.setdefault(key, _Saved())
    if kind == "S":
        saved.gaps.clear()
    for gap in closed:
        saved.gaps.pop(gap, None)
    saved.gaps.update(opened)
    if kind == "P":  # progress never moves a position back
        position = _highest(saved.position, position)
    saved.position = position


def _parse_gap_fields(fields: List[str]) -> Tuple[Dict[int, float], List[int]]:
    opened: Dict[int, float] = {}
    closed: List[int] = []
    for item in fields:
        if item.startswith("+"):
            gap, expiry = item[1:].split("@")
            value = float(expiry)
            if not math.isfinite(value):
                raise ValueError("expiry is not a number")
            opened[_id_from_text(gap)] = value
        elif item.startswith("-"):
            closed.append(_id_from_text(item[1:]))
        else:
            raise ValueError(f"unknown gap field {item!r}")
    return opened, closed


# --------------------------------------------------------------------------- the unpickler


class _ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle names a global a state file never holds (it could run code)."""


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes (datetimes) with protocol 2, and no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _ForbiddenGlobalError(
            "it calls _codecs.encode with arguments a state file never uses"
        )
    return text.encode("latin1")


class _StateUnpickler(pickle.Unpickler):
    """Resolves only the globals a classic state file needs; anything else is refused."""

    ALLOWED = {
        ("datetime", "datetime"): _dt.datetime,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _ForbiddenGlobalError(
                f"it refers to {module}.{name}, which a state file never holds"
            ) from None


# --------------------------------------------------------------------------- small helpers


def _is_event_id(value: object) -> bool:
    """An event id or position as a state file may hold it (0 is "before every event")."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EVENT_ID


def _id_from_text(text: Union[str, bytes]) -> int:
    """An event id written as digits; ValueError (a damaged line or file) when it is not."""
    value = int(text)
    if not 0 <= value <= MAX_EVENT_ID:
        raise ValueError(f"{value} is not an event id")
    return value


def _text(value: object) -> str:
    """A folder or plugin name; Python 2 pickles give bytes (UTF-8, else Latin-1)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin1")
    raise _DamagedStateError(f"a folder or plugin name is {value!r}, not text")


def _epoch(expiry: _dt.datetime) -> float:
    """A classic expiry datetime (naive local time) as epoch seconds; absurd dates expire now."""
    try:
        return expiry.timestamp()
    except (OverflowError, OSError, ValueError):
        return 0.0


def _finite(expiry: float, wall: float) -> float:
    """Keep an expiry within what a datetime can hold (a deadline may be infinite)."""
    return min(max(expiry, 0.0), wall + _TEN_YEARS)


def _highest(first: Optional[int], second: Optional[int]) -> Optional[int]:
    if first is None:
        return second
    return first if second is None else max(first, second)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _make_private(path: Path) -> None:
    """Take group and other permissions off a state file another program left open to them
    (the classic daemon wrote it under the umask, usually readable by everyone)."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & ~PRIVATE_MODE:
            os.chmod(path, mode & PRIVATE_MODE)
    except OSError:
        pass  # missing, or not ours to change: loading says what matters about it


def _copy_private(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_MODE)
        handle.write(source.read_bytes())
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; file systems that cannot fsync a folder are accepted."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
