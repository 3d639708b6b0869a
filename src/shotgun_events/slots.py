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
    16  uint16 length of the key
    18  bytes  the plugin key as JSON ["<folder>", "<plugin>"], UTF-8

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
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PluginKey = Tuple[str, str]

MAGIC = b"SGEDPOS1"
HEADER_SIZE = 64
SLOT_SIZE = 1024
KEY_ROOM = SLOT_SIZE - 18
_POSITION = struct.Struct("<qq")
_KEY_LENGTH = struct.Struct("<H")
_INITIAL_SLOTS = 64


class Slot:
    """One plugin's position in the mapping; a write is a memory store, no system call."""

    __slots__ = ("_map", "_offset", "_value")

    def __init__(self, mapping: mmap.mmap, offset: int) -> None:
        self._map = mapping
        self._offset = offset
        self._value = -1

    def advance(self, position: Optional[int]) -> None:
        """Record progress; like the journal, a slot never moves a position back."""
        if position is not None and position > self._value:
            self.set(position)

    def set(self, position: Optional[int]) -> None:
        """Record a position exactly, even backwards (an operator's reset)."""
        value = -1 if position is None else position
        self._value = value
        _POSITION.pack_into(self._map, self._offset, value, ~value)

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
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        os.fchmod(self._fd, mode)
        self._capacity = 0
        self._used = 0
        #: Every mapping made; older ones stay open because slots handed out still use them
        #: (all map the same file pages, so writes through any of them land in the file).
        self._maps: List[mmap.mmap] = []
        self._grow(_INITIAL_SLOTS)
        self._maps[-1][: len(MAGIC)] = MAGIC

    def _grow(self, capacity: int) -> None:
        os.ftruncate(self._fd, HEADER_SIZE + capacity * SLOT_SIZE)
        self._maps.append(mmap.mmap(self._fd, HEADER_SIZE + capacity * SLOT_SIZE))
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
        _POSITION.pack_into(mapping, offset, -1, 0)  # check mismatch: not valid until written
        _KEY_LENGTH.pack_into(mapping, offset + 16, len(encoded))
        mapping[offset + 18 : offset + 18 + len(encoded)] = encoded
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


def read_slots(path: Path) -> Dict[PluginKey, int]:
    """The valid positions in a slots file (a missing or foreign file gives none)."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(MAGIC):
        return {}
    positions: Dict[PluginKey, int] = {}
    for offset in range(HEADER_SIZE, len(data) - SLOT_SIZE + 1, SLOT_SIZE):
        position, check = _POSITION.unpack_from(data, offset)
        if check != ~position or position < 0:
            continue
        (length,) = _KEY_LENGTH.unpack_from(data, offset + 16)
        try:
            folder, plugin = json.loads(data[offset + 18 : offset + 18 + length])
        except (ValueError, TypeError):
            continue
        if isinstance(folder, str) and isinstance(plugin, str):
            key = (folder, plugin)
            positions[key] = max(position, positions.get(key, position))
    return positions
