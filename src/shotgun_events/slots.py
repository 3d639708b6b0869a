"""Plugin positions in a memory-mapped file: progress that survives a kill -9 for free.

A worker records its position after every event. Writing it to a journal costs a system
call, and in a threaded Python a system call also gives up the interpreter lock, which ten
busy workers then queue for. Writing it into a shared memory mapping of a file costs a
memory store: the page belongs to the kernel's page cache the moment it is written, so the
position survives the process being killed (not a power loss: the state file's periodic
fsync covers that).

File layout (``<eventIdFile>.positions.<run>``): a 64-byte header, then fixed 1 KiB slots,
one per plugin::

    0   int64  position (-1: none)
    8   int64  check = ~position: a slot whose check does not match is ignored
    16  int64  the event in hand (0: none), for partly handled events
    24  uint64 its done callbacks: bit i = callback i finished; the high 32 bits hold a
               signature of the plugin's callback names (a changed plugin reruns them all)
    32  uint64 check = event ^ done ^ PARTIAL_SALT
    40  uint16 length of the key
    42  bytes  the plugin key as JSON ["<folder>", "<plugin>"], UTF-8

This module must never be the only place a gap lives (gaps go to the journal, written
before the position that passes them), and must never raise into a worker.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PluginKey = Tuple[str, str]

#: The highest event id a position can hold (a signed 64-bit number, as the site's ids).
#: Operator commands and loaded state files are checked against it: a larger value would
#: fail here, in a worker, or at every start.
MAX_EVENT_ID = 2**63 - 1

MAGIC = b"SGEDPOS2"
HEADER_SIZE = 64
SLOT_SIZE = 1024
KEY_AT = 42
KEY_ROOM = SLOT_SIZE - KEY_AT
PARTIAL_SALT = 0x5EDC0FFEE
#: Callbacks beyond this many in one plugin are not tracked one by one (they rerun).
TRACKED_CALLBACKS = 32
_POSITION = struct.Struct("<qq")
_PARTIAL = struct.Struct("<qQQ")
_U64 = 0xFFFFFFFFFFFFFFFF
_KEY_LENGTH = struct.Struct("<H")


@dataclass(frozen=True)
class Partial:
    """An event a plugin had started on: which of its callbacks had finished."""

    event_id: int
    signature: int
    done: int  # bit i set: callback i finished

    def finished(self, index: int) -> bool:
        return index < TRACKED_CALLBACKS and bool(self.done >> index & 1)


@dataclass(frozen=True)
class SlotRecord:
    position: int
    partial: Optional[Partial]


_INITIAL_SLOTS = 64


class Slot:
    """One plugin's position in the mapping; a write is a memory store, no system call."""

    __slots__ = ("_done", "_event", "_map", "_offset", "_value")

    def __init__(self, mapping: mmap.mmap, offset: int) -> None:
        self._map = mapping
        self._offset = offset
        self._value = -1
        self._event = 0
        self._done = 0

    def advance(self, position: Optional[int]) -> None:
        """Record progress; like the journal, a slot never moves a position back."""
        if position is not None and position > self._value:
            self.set(position)

    def set(self, position: Optional[int]) -> None:
        """Record a position exactly, even backwards (an operator's reset)."""
        value = -1 if position is None else position
        self._value = value
        _POSITION.pack_into(self._map, self._offset, value, ~value)

    def start_event(self, event_id: int, signature: int, done_before: int = 0) -> None:
        """A delivery of ``event_id`` starts: only the callbacks in ``done_before`` (finished
        before a restart) count as finished, not those of an earlier failed run of it."""
        self._event, self._done = event_id, done_before & 0xFFFFFFFF
        done = (signature & 0xFFFFFFFF) << 32 | self._done
        _PARTIAL.pack_into(
            self._map, self._offset + 16, event_id, done, (event_id ^ done ^ PARTIAL_SALT) & _U64
        )

    def callback_done(self, event_id: int, index: int, signature: int) -> None:
        """Callback ``index`` finished on ``event_id``, the event in hand."""
        if index >= TRACKED_CALLBACKS:
            return
        if event_id != self._event:
            self._event, self._done = event_id, 0
        self._done |= 1 << index
        done = (signature & 0xFFFFFFFF) << 32 | self._done
        _PARTIAL.pack_into(
            self._map, self._offset + 16, event_id, done, (event_id ^ done ^ PARTIAL_SALT) & _U64
        )

    def clear(self) -> None:
        """Make the slot invalid: the plugin no longer belongs in the state."""
        self._value = -1
        _POSITION.pack_into(self._map, self._offset, -1, 0)


class PositionSlots:
    """The slots file of one daemon run. Thread use: ``assign`` from one thread at a time;
    ``Slot.write`` from each plugin's own worker."""

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        self.path = path
        self._lock = threading.Lock()
        # O_EXCL: never a file that exists (another run's positions); FileExistsError then.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        self._capacity = 0
        self._used = 0
        #: Every mapping made; older ones stay open because slots handed out still use them
        #: (all map the same file pages, so writes through any of them land in the file).
        self._maps: List[mmap.mmap] = []
        try:
            os.fchmod(self._fd, mode)
            self._grow(_INITIAL_SLOTS)
        except OSError:
            os.close(self._fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._maps[-1][: len(MAGIC)] = MAGIC

    def _grow(self, capacity: int) -> None:
        """Extend the file with its disk blocks reserved, then map it; OSError when full."""
        size = HEADER_SIZE + capacity * SLOT_SIZE
        _reserve(self._fd, size)
        self._maps.append(mmap.mmap(self._fd, size))
        self._capacity = capacity

    def assign(self, key: PluginKey) -> Optional[Slot]:
        """A new slot holding ``key``, or None when the key is too long for a slot."""
        encoded = json.dumps(list(key)).encode("utf-8")
        if len(encoded) > KEY_ROOM:
            return None
        with self._lock:
            if self._used == self._capacity:
                self._grow(self._capacity * 2)
            mapping = self._maps[-1]
            offset = HEADER_SIZE + self._used * SLOT_SIZE
            self._used += 1
        _POSITION.pack_into(mapping, offset, -1, 0)  # no position until the first write
        _PARTIAL.pack_into(mapping, offset + 16, 0, 0, 0)
        _KEY_LENGTH.pack_into(mapping, offset + KEY_AT - 2, len(encoded))
        mapping[offset + KEY_AT : offset + KEY_AT + len(encoded)] = encoded
        return Slot(mapping, offset)

    def close(self, delete: bool) -> None:
        """Stop using the file; ``delete`` removes it (after a clean final checkpoint).

        The mappings themselves are left to the process's exit: a worker abandoned in a
        stuck callback may still write its slot, and must not hit a closed mapping.
        """
        with self._lock:
            os.close(self._fd)
        if delete:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _reserve(fd: int, size: int) -> None:
    """Make the file ``size`` bytes long with real blocks behind every byte.

    A sparse file would get its blocks only when a mapped page is first written, and when the
    disk is full at that moment the kernel kills the whole process with SIGBUS. Reserving them
    here turns a full disk into an OSError the caller can handle (journal only).
    """
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is not None:
        allocate(fd, 0, size)  # glibc writes zeros itself where fallocate is unsupported
        return
    current = os.fstat(fd).st_size
    if size > current:
        os.pwrite(fd, bytes(size - current), current)


def read_slots(path: Path) -> Dict[PluginKey, SlotRecord]:
    """The valid records in a slots file (a missing or foreign file gives none)."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(MAGIC):
        return {}
    records: Dict[PluginKey, SlotRecord] = {}
    for offset in range(HEADER_SIZE, len(data) - SLOT_SIZE + 1, SLOT_SIZE):
        position, check = _POSITION.unpack_from(data, offset)
        if check != ~position or position < 0:
            continue
        (length,) = _KEY_LENGTH.unpack_from(data, offset + KEY_AT - 2)
        try:
            folder, plugin = json.loads(data[offset + KEY_AT : offset + KEY_AT + length])
        except (ValueError, TypeError):
            continue
        if not (isinstance(folder, str) and isinstance(plugin, str)):
            continue
        event_id, done, partial_check = _PARTIAL.unpack_from(data, offset + 16)
        partial = None
        if event_id > position and partial_check == (event_id ^ done ^ PARTIAL_SALT) & _U64:
            partial = Partial(event_id, done >> 32, done & 0xFFFFFFFF)
        key = (folder, plugin)
        if key not in records or position > records[key].position:
            records[key] = SlotRecord(position, partial)
    return records
