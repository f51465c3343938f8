"""The study journal file: Optuna's journal file backend, never appending after a torn record.

A tuner killed, or a disk filling, in the middle of an append leaves the file ending in a
partial line. Optuna 5.0.0's reader skips such a tail, but its writer appends right after it:
the merged line cannot be parsed, and from then on every read of the study fails. Here the
torn tail is moved aside (into `<journal>.torn-<UTC time>`) before each append, under the lock
Optuna's own writers take, and an append that fails (a full disk) is cut off again: the file
only ever holds whole records, whoever writes it. A record that cannot be read *before* the
end (two records run together by an older tuner, a disk fault) is not a torn tail: nothing is
repaired then, and reading says which line is damaged.

Appends are not synced one by one (a trial makes ten or so: 3-90 ms each here, on the
controller's path): the study syncs at the points a crash of the machine must not lose
(`Journal.sync`: before a trial's process runs, once a trial has ended). A crash loses at most
the records since then, a suffix of the file (the torn tail, if any, is repaired as above): a
trial's suggestion or measurements, which the next run makes again.
"""
from __future__ import annotations

import json
import os
import sys
import time

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

TORN_SUFFIX = ".torn-"
_CHUNK = 65536


class DamagedJournal(Exception):
    """A line before the journal's end is not a record: the study cannot be read past it."""


class JournalFile(JournalFileBackend):
    """A `JournalFileBackend` whose appends repair a torn tail first and never leave one."""

    def __init__(self, path: str):
        self.path = path
        self.lock = JournalFileSymlinkLock(path)  # Optuna's default: its writers use the same
        super().__init__(path, self.lock)

    def read_logs(self, log_number_from: int):
        try:
            yield from super().read_logs(log_number_from)
        except ValueError:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            raise DamagedJournal(
                f"{self.path} line {_first_damaged_line(self.path)} is not a whole record (two "
                "records run together by an older tuner, or a disk fault), so the study cannot "
                "be read: restore the file from a backup, or start a new study with another "
                "--output-dir") from None

    def append_logs(self, logs: list[dict]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        self.lock.acquire()
        try:
            self._set_torn_tail_aside()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                whole = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                except BaseException as exc:
                    os.ftruncate(fd, whole)  # no partial record, whatever stopped the write
                    if isinstance(exc, OSError) and exc.filename is None:
                        exc.filename = self.path
                    raise
            finally:
                os.close(fd)
        finally:
            self.lock.release()

    def sync(self) -> None:
        """Makes every record appended so far durable."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _set_torn_tail_aside(self) -> None:
        """Moves the bytes after the last newline into a file of their own (the lock held)."""
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            keep = _whole_records_size(f, size)
            if keep == size:
                return
            f.seek(keep)
            torn = f.read()
            aside = f"{self.path}{TORN_SUFFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            with open(aside, "ab") as out:  # "a": a second repair in the same second adds to it
                out.write(torn)
                out.flush()
                os.fsync(out.fileno())
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        print(f"note: {self.path} ended in a torn record ({len(torn)} bytes, left by a tuner "
              f"that stopped mid-write); kept every whole record, moved the torn bytes to "
              f"{aside}", file=sys.stderr)


class Journal(JournalStorage):
    """Optuna's journal storage over a `JournalFile`, with the file's `sync`."""

    def __init__(self, path: str):
        self.file = JournalFile(path)
        super().__init__(self.file)

    def sync(self) -> None:
        self.file.sync()


def _whole_records_size(f, size: int) -> int:
    """The length of the file up to and including its last newline."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        newline = f.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _first_damaged_line(path: str) -> int | None:
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                json.loads(line)
            except ValueError:
                return number
    return None
