"""The files a daemon run writes, and the rule that no two of them are one file.

A run writes the state file (``eventIdFile``) and the files named after it (``.prev``, the
lock, the control socket, journals, the positions file, temporary and damaged copies), the
pid file, the status file, the main log file and its rotated copies, the timing log, and in
``logMode 1`` one ``plugin.<name>`` log per plugin. Two options naming one of them (a status
file written over the state file, a pid file that is the state file's lock) destroy saved
positions or deadlock the start, so the config refuses such a pair, naming both options.

Paths are compared as the kernel sees them: symlinks resolved as far as they exist, and the
same (device, inode) when both exist (a hard link or a bind mount). The config file is in
the list too: the daemon must never write over its own config.

This module must never create, open or change a file: it only looks at paths.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Pattern, Tuple

#: Files named after the state file, each beside it: ``<eventIdFile><suffix>``.
STATE_SIBLINGS = (
    (".prev", "previous copy"),
    (".prev-new", "previous copy being written"),
    (".lock", "lock"),
    (".control", "control socket"),
)
#: Families of files named after the state file (journals, positions files of each run,
#: temporary copies, damaged files moved aside), as patterns of the part after its name.
STATE_FAMILIES = r"\.(journal\.\d+|positions\..+|tmp-.+|damaged-.+)"
#: What TimedRotatingFileHandler names a midnight rotation (and deletes past ten of them).
ROTATED_SUFFIX = r"\.\d{4}-\d{2}-\d{2}(\.\w+)?"
#: logMode 1: each plugin's log file in the log folder starts with this.
PLUGIN_LOG_PREFIX = "plugin."


#: The name, in messages, of the file no option names but which the daemon must not write.
CONFIG_FILE = "the config file"


@dataclass(frozen=True)
class OwnFile:
    """One file the daemon writes: where, and how to name it in a message.

    ``option`` is the ``[daemon]`` option that names it, or CONFIG_FILE.
    """

    option: str
    what: str
    path: Path


@dataclass(frozen=True)
class FileFamily:
    """Files the daemon writes under names that follow a pattern, in one folder."""

    option: str
    what: str
    folder: str
    names: Pattern[str]

    def holds(self, real_path: str) -> bool:
        folder, name = os.path.split(real_path)
        return folder == self.folder and self.names.fullmatch(name) is not None


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _family(option: str, what: str, base: Path, pattern: str) -> FileFamily:
    """The files ``<base name><pattern>`` in the real folder of ``base``."""
    return FileFamily(option, what, _real(base.parent), re.compile(re.escape(base.name) + pattern))


def daemon_files(
    *,
    config_path: Path,
    event_id_file: Path,
    pid_file: Path,
    status_file: Path,
    main_log: Path,
    timing_log: Optional[Path],
    plugin_log_folder: Optional[Path],
    rotates: bool,
) -> Tuple[List[OwnFile], List[FileFamily]]:
    """Every file of one run, in the order its clashes are reported (the later is named)."""
    files = [
        OwnFile(CONFIG_FILE, "the config file", config_path),
        OwnFile("eventIdFile", "the state file", event_id_file),
    ]
    for suffix, what in STATE_SIBLINGS:
        sibling = event_id_file.with_name(event_id_file.name + suffix)
        files.append(OwnFile("eventIdFile", f"the state file's {what}", sibling))
    files.append(OwnFile("pidFile", "the pid file", pid_file))
    files.append(OwnFile("status_file", "the status file", status_file))
    files.append(OwnFile("logFile", "the main log file", main_log))
    if timing_log is not None:
        files.append(OwnFile("timing_log", "the timing log", timing_log))
    families = [
        _family(
            "eventIdFile",
            "the state file's journals, positions and temporary files",
            event_id_file,
            STATE_FAMILIES,
        )
    ]
    if rotates:
        families.append(
            _family("logFile", "the main log's rotated copies", main_log, ROTATED_SUFFIX)
        )
        if timing_log is not None:
            families.append(
                _family(
                    "timing_log",
                    "the timing log's rotated copies",
                    timing_log,
                    ROTATED_SUFFIX,
                )
            )
    if plugin_log_folder is not None:
        families.append(
            FileFamily(
                "logMode",
                f"the plugins' log files ({PLUGIN_LOG_PREFIX}<name> in logPath)",
                _real(plugin_log_folder),
                re.compile(re.escape(PLUGIN_LOG_PREFIX) + ".+"),
            )
        )
    return files, families


@dataclass(frozen=True)
class Clash:
    """Two of the daemon's files that are one: ``later`` is reported, naming the other.

    ``family`` is True when the other is a family of files (``.journal.<n>``, rotated logs):
    ``later`` then has a name the daemon gives one of them, and would be deleted or
    overwritten as such.
    """

    later: OwnFile
    earlier_option: str
    earlier_what: str
    real_path: str
    family: bool = False

    @property
    def message(self) -> str:
        """The problem, said of ``later``'s option (the caller names the file and option)."""
        named_by = "" if self.earlier_option == CONFIG_FILE else f", [daemon] {self.earlier_option}"
        relation = "has a name the daemon gives" if self.family else "is also"
        return (
            f"{self.later.what} {self.real_path} {relation} {self.earlier_what}{named_by}; "
            "each of the daemon's files must be a file of its own"
        )


def first_clash(files: List[OwnFile], families: List[FileFamily]) -> Optional[Clash]:
    """The first file that is another one, or falls among another option's family."""
    seen: List[Tuple[OwnFile, str, Optional[Tuple[int, int]]]] = []
    for own in files:
        real = _real(own.path)
        inode = _inode(real)
        for earlier, earlier_real, earlier_inode in seen:
            if earlier.option == own.option:
                # One option's own files: the state file and its ``.prev`` share an inode
                # for a moment at each checkpoint, by design (state.py).
                continue
            if real == earlier_real or (inode is not None and inode == earlier_inode):
                return Clash(own, earlier.option, earlier.what, real)
        for family in families:
            if family.option != own.option and family.holds(real):
                return Clash(own, family.option, family.what, real, family=True)
        seen.append((own, real, inode))
    return None


def _inode(real_path: str) -> Optional[Tuple[int, int]]:
    try:
        info = os.stat(real_path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)
