"""A durable, size-bounded, append-only FIFO of JSON records on disk, for sinks that must not lose.

    spool_dir/
      lock                       flock'ed while open: one process per spool
      owner                      {"token", "host", "pid", "since"}: who holds it (removed on a clean close)
      00000000000000000007.seg   records, one JSON document per line, oldest segment first
      00000000000000000008.seg   the segment being appended to (a new one at each open)
      committed                  {"segment": 7, "offset": 1234}: where the undelivered records start

`append(record)` writes one line; `peek(n)` reads the oldest undelivered records without removing
them; `commit(n)` removes the first n of the last peek once they were delivered. A segment whose
every record is committed (or dropped) is deleted. After a restart, everything appended and not
committed is replayed, so delivery is at least once: a record delivered just before a crash may be
sent again (give receivers a key to dedupe by).

Bounded by `max_bytes` of undelivered records: an append that would go past it first drops the
oldest whole segment(s) (segments are about max_bytes / 16 each), counts the records in `dropped`
and logs a warning once per burst; the burst ends when deliveries bring the spool under half full.

Durability: lines go to the OS at once (one `os.write` each), and reach the disk at each `sync()`:
an fsync of the segments and an atomic replace of `committed`. Run `sync_periodically()` in a task
group to do that off the event loop; everything else is a small write, read or unlink of the page
cache, cheap enough for the loop. A crash loses at most the records appended since the last sync,
and a torn last line is cut off at the next open.

One consumer only: `peek` and `commit` must not be interleaved by two delivery loops.

Taking a spool over. A process that dies releases its lock with it (the kernel does that, and an
NFS server once the dead host's lease runs out), so whoever opens the folder next (a restarted
worker, another worker taking over its slot) replays what it left, and logs whom it took the
folder from. A live owner's lock is respected: opening fails with a SinkError naming its pid and
host, unless `takeover=True` (for a worker that was cut off, or hangs, while its slot moved on):
then the lock file is replaced and the owner file names the newcomer. Either way the old owner is
fenced off: at its next sync, new segment or segment removal it finds the owner file no longer
names it, raises SinkError and from then on writes nothing (not even its committed position), so
two processes never go on appending to, or deleting from, one spool. What it appended after the
takeover and before noticing may be lost: the newcomer took the segments as they were.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ..errors import SinkError

log = logging.getLogger(__name__)

SEGMENT = re.compile(r"^(\d{20})\.seg$")
COMMITTED = "committed"
LOCK, OWNER = "lock", "owner"
MAX_SEGMENT_BYTES = 8 << 20
READ_CHUNK = 256 << 10


class _Position(msgspec.Struct):
    segment: int
    offset: int


class _Owner(msgspec.Struct):
    token: str
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))})"


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0
    count: int = 0


class Spool:
    """Open (blocking: call from a worker thread in async code) or raise SinkError naming the folder."""

    def __init__(
        self, directory: str | Path, *, max_bytes: int = 64 << 20, what: str = "spool", takeover: bool = False
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = max(1, min(MAX_SEGMENT_BYTES, max_bytes // 16))
        self.what = what
        self.takeover = takeover
        self.taken_from: str | None = None  # whom the folder was taken over from, when its owner had not closed it
        self.appended = 0
        self.dropped = 0
        self._burst_dropped = 0
        self._segments: deque[_Segment] = deque()
        self._head = _Position(0, 0)  # replaced, never mutated: sync() reads it from its thread
        self._head_consumed = 0  # records of the head segment before the head offset
        self._pending = 0
        self._total_bytes = 0
        self._head_id = 0  # records ever removed from the front (committed or dropped)
        self._peek_from = 0
        self._peeked = 0
        self._ahead: deque[tuple[int, int, bytes]] = deque()  # (segment, end offset, line) from the head on
        self._read_seq = -1
        self._read_pos = 0
        self._reader: Any = None
        self._writer: int | None = None
        self._unsynced: list[int] = []  # descriptors of finished segments, fsynced and closed by sync()
        self._sync_lock = threading.Lock()
        self._dirty = False
        self._lock_fd: int | None = None
        self._owner = _Owner(uuid.uuid4().hex, socket.gethostname(), os.getpid(), time.time())
        self._fenced: SinkError | None = None
        self._encoder = msgspec.json.Encoder(enc_hook=json_default)
        try:
            with self._translate("open"):
                self._open()
        except BaseException:
            self._release()
            raise

    # ---- the FIFO ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Records appended and neither committed nor dropped."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        return self._total_bytes - self._head.offset

    @property
    def dirty(self) -> bool:
        """Whether a `sync()` has work to do."""
        return self._dirty

    def append(self, record: Any) -> None:
        """Add one JSON-serialisable record at the end."""
        self.append_raw(self._encoder.encode(record))

    def append_raw(self, document: bytes) -> None:
        """Add one record already encoded as a single-line JSON document."""
        self._refuse_if_fenced()
        line = document + b"\n"
        if len(line) > self.max_bytes:
            self._count_dropped(1, f"a record of {len(line)} bytes does not fit in {self.max_bytes} bytes")
            return
        self._make_room(len(line))
        with self._translate("write"):
            writer = self._writer_for_append()
            try:
                _write_all(writer, line)
            except OSError:
                os.ftruncate(writer, self._segments[-1].size)  # no torn line before the next append
                raise
        segment = self._segments[-1]
        segment.size += len(line)
        segment.count += 1
        self._total_bytes += len(line)
        self._pending += 1
        self.appended += 1
        self._dirty = True

    def peek(self, n: int) -> list[Any]:
        """The oldest `n` (or fewer) undelivered records, decoded; they stay until `commit`."""
        return [msgspec.json.decode(line) for line in self.peek_raw(n)]

    def peek_raw(self, n: int) -> list[bytes]:
        """As `peek`, the records as the JSON bytes that were appended (without the newline)."""
        self._peek_from = self._head_id
        with self._translate("read"):
            while len(self._ahead) < n and self._read_more():
                pass
        lines = [line for _, _, line in islice(self._ahead, n)]
        self._peeked = len(lines)
        return lines

    def commit(self, n: int) -> None:
        """The first `n` records of the last `peek` were delivered: remove them for good.

        Records of that peek that were dropped in the meantime are not removed twice.
        """
        self._refuse_if_fenced()
        count = self._peek_from + min(n, self._peeked) - self._head_id
        for _ in range(max(0, count)):
            seq, end, _ = self._ahead.popleft()
            while self._segments[0].seq != seq:
                self._retire_head()
            self._head = _Position(seq, end)
            self._head_consumed += 1
        if count > 0:
            self._pending -= count
            self._head_id += count
            self._dirty = True
            self._trim()
            self._end_burst_if_relieved()

    # ---- durability --------------------------------------------------------------------------

    def sync(self) -> None:
        """fsync what was appended and record the committed position (blocking; thread-safe)."""
        self._check_owner()
        with self._sync_lock:
            self._dirty = False
            closing, self._unsynced = self._unsynced, []
            writer = self._writer
            head = self._head
        with self._translate("sync"):
            for fd in closing:
                os.fsync(fd)
                os.close(fd)
            if writer is not None:
                os.fsync(writer)
            _replace_atomically(self.directory / COMMITTED, msgspec.json.encode(head))
            _fsync_directory(self.directory)

    async def sync_periodically(self, interval_s: float) -> None:
        """`sync()` in a worker thread every `interval_s` while there is something to sync (run as a task)."""
        while True:
            await anyio.sleep(interval_s)
            if self._dirty:
                await anyio.to_thread.run_sync(self.sync)

    def close(self) -> None:
        """Sync and release the folder (blocking). The records left are there at the next open."""
        if self._lock_fd is None:
            return
        try:
            if self._fenced is None:
                self.sync()
                _remove_if_ours(self.directory / OWNER, self._owner.token)
        finally:
            for fd in self._unsynced:  # left by a sync that did not happen (fenced off)
                os.close(fd)
            self._unsynced = []
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._end_burst()
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- opening -----------------------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._lock()
        previous = self._read_owner()
        _replace_atomically(self.directory / OWNER, msgspec.json.encode(self._owner))
        if previous is not None:
            self.taken_from = previous.describe()
            log.warning("%s: took %s over from %s, which did not close it; what it left is replayed",
                        self.what, self.directory, self.taken_from)
        committed = self._read_committed()
        for seq, path in _segment_files(self.directory):
            if seq < committed.segment:
                path.unlink()  # delivered before the last run ended
                continue
            self._segments.append(self._load_segment(seq, path))
        self._start_at(committed)

    def _lock(self) -> int:
        """The locked lock file's descriptor; SinkError naming the holder if a live process holds it
        (unless `takeover`: then a new lock file replaces the held one)."""
        path = self.directory / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
        holder = self._read_owner()
        who = holder.describe() if holder is not None else "another sink or process"
        if not self.takeover:
            raise SinkError(f"{self.what}: {str(self.directory)!r} is in use by {who}; stop it first, or "
                            f"take the folder over (spool_takeover = true) to fence it off") from None
        log.warning("%s: taking %s over from %s, which still holds it; it stops at its next sync",
                    self.what, self.directory, who)
        fresh = path.with_name(f"{LOCK}.{self._owner.token}")
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(fresh, path)
        return fd

    def _read_owner(self) -> _Owner | None:
        try:
            return msgspec.json.decode((self.directory / OWNER).read_bytes(), type=_Owner)
        except FileNotFoundError:
            return None
        except msgspec.DecodeError:
            return _Owner("", "an unknown host", 0, 0.0)

    def _check_owner(self) -> None:
        """SinkError, for good, once the owner file names another process (it took the folder over)."""
        self._refuse_if_fenced()
        current = self._read_owner()
        if current is None or current.token != self._owner.token:
            who = current.describe() if current is not None else "another process, which has closed it since"
            self._fenced = SinkError(f"{self.what}: {str(self.directory)!r} was taken over by {who}; "
                                     f"this process writes nothing more to it")
            log.error("%s", self._fenced.message)
            raise self._fenced

    def _refuse_if_fenced(self) -> None:
        if self._fenced is not None:
            raise self._fenced

    def _read_committed(self) -> _Position:
        try:
            return msgspec.json.decode((self.directory / COMMITTED).read_bytes(), type=_Position)
        except FileNotFoundError:
            return _Position(0, 0)
        except msgspec.DecodeError:
            log.warning("%s: %s/%s is damaged; replaying every record kept", self.what, self.directory, COMMITTED)
            return _Position(0, 0)

    def _load_segment(self, seq: int, path: Path) -> _Segment:
        """A segment as found on disk, a torn last line (a crash mid-write) cut off."""
        data = path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            log.warning("%s: cutting a torn record (%d bytes) off the end of %s", self.what, len(data) - whole, path)
            os.truncate(path, whole)
        return _Segment(seq, path, size=whole, count=data.count(b"\n", 0, whole))

    def _start_at(self, committed: _Position) -> None:
        """Place the head at the committed position (the oldest segment's start if that one is gone)."""
        self._total_bytes = sum(segment.size for segment in self._segments)
        self._pending = sum(segment.count for segment in self._segments)
        if not self._segments:  # the next segment gets a number the committed file never named
            self._head = _Position(committed.segment + 1, 0)
            return
        head = self._segments[0]
        offset = min(committed.offset, head.size) if head.seq == committed.segment else 0
        consumed = head.path.read_bytes().count(b"\n", 0, offset) if offset else 0
        self._head = _Position(head.seq, offset)
        self._head_consumed = consumed
        self._pending -= consumed
        self._read_seq, self._read_pos = head.seq, offset
        self._trim()

    # ---- writing -----------------------------------------------------------------------------

    def _writer_for_append(self) -> int:
        if self._writer is None or self._segments[-1].size >= self.segment_bytes:
            self._roll()
        assert self._writer is not None
        return self._writer

    def _roll(self) -> None:
        """Start a new segment; the finished one is fsynced and closed by the next sync()."""
        self._check_owner()
        seq = self._segments[-1].seq + 1 if self._segments else self._head.segment
        path = self.directory / f"{seq:020d}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with self._sync_lock:
            if self._writer is not None:
                self._unsynced.append(self._writer)
            self._writer = fd
        self._segments.append(_Segment(seq, path))
        if len(self._segments) == 1:
            self._head = _Position(seq, 0)
            self._head_consumed = 0
            self._read_seq, self._read_pos = seq, 0
        self._trim()

    def _make_room(self, size: int) -> None:
        """Drop the oldest segments until `size` more bytes fit."""
        dropped = 0
        while self._pending > 0 and self.pending_bytes + size > self.max_bytes:
            if len(self._segments) == 1:
                self._roll()  # never drop the segment being written: start another first
            head = self._segments[0]
            gone = head.count - self._head_consumed
            while self._ahead and self._ahead[0][0] == head.seq:
                self._ahead.popleft()
            self._retire_head()
            self._pending -= gone
            self._head_id += gone
            dropped += gone
        if dropped:
            self._dirty = True
            self._count_dropped(dropped, f"full ({self.max_bytes} bytes)")

    # ---- reading and removing ----------------------------------------------------------------

    def _read_more(self) -> bool:
        """Read the next chunk of whole lines into `_ahead`; False when there is nothing more."""
        segment = self._segment(self._read_seq)
        if segment is None or self._read_pos >= segment.size:
            following = [s for s in self._segments if s.seq > self._read_seq]
            if not following:
                return False
            self._close_reader()
            self._read_seq, self._read_pos = following[0].seq, 0
            return True
        if self._reader is None:
            self._reader = open(segment.path, "rb")
        self._reader.seek(self._read_pos)
        data = self._reader.read(min(segment.size - self._read_pos, READ_CHUNK))
        while data.rfind(b"\n") < 0:  # a line longer than a chunk
            more = self._reader.read(min(segment.size - self._read_pos - len(data), READ_CHUNK))
            if not more:
                raise SinkError(f"{self.what}: {str(segment.path)!r} was cut short by something else")
            data += more
        whole = data[: data.rfind(b"\n") + 1]
        position = self._read_pos
        for line in whole.split(b"\n")[:-1]:
            position += len(line) + 1
            self._ahead.append((segment.seq, position, line))
        self._read_pos = position
        return True

    def _segment(self, seq: int) -> _Segment | None:
        for segment in self._segments:
            if segment.seq == seq:
                return segment
        return None

    def _retire_head(self) -> None:
        """Delete the oldest segment (everything in it was committed or dropped)."""
        self._check_owner()
        head = self._segments.popleft()
        if self._read_seq == head.seq:
            self._close_reader()
            self._read_seq, self._read_pos = (self._segments[0].seq if self._segments else head.seq + 1), 0
        self._total_bytes -= head.size
        following = self._segments[0].seq if self._segments else head.seq + 1
        self._head = _Position(following, 0)
        self._head_consumed = 0
        head.path.unlink(missing_ok=True)

    def _trim(self) -> None:
        """Delete finished segments that hold nothing undelivered."""
        while len(self._segments) > 1 and self._head.offset >= self._segments[0].size:
            self._retire_head()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- dropping and errors -----------------------------------------------------------------

    def _count_dropped(self, count: int, why: str) -> None:
        if self._burst_dropped == 0:
            log.warning("%s %s: %s: dropping the oldest records until deliveries catch up",
                        self.what, self.directory, why)
        self._burst_dropped += count
        self.dropped += count

    def _end_burst_if_relieved(self) -> None:
        if self._burst_dropped and self.pending_bytes <= self.max_bytes // 2:
            self._end_burst()

    def _end_burst(self) -> None:
        if self._burst_dropped:
            log.warning("%s %s: dropped %d records while full (%d in all)",
                        self.what, self.directory, self._burst_dropped, self.dropped)
            self._burst_dropped = 0

    def _translate(self, action: str) -> _OSErrorAsSinkError:
        return _OSErrorAsSinkError(f"{self.what}: cannot {action} {str(self.directory)!r}")


class _OSErrorAsSinkError:
    """Turn an OSError into a SinkError that names the folder and the reason."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
            raise SinkError(f"{self.prefix}: {reason}; choose a writable folder") from exc


def _segment_files(directory: Path) -> list[tuple[int, Path]]:
    found = [(int(match.group(1)), path) for path in directory.iterdir() if (match := SEGMENT.match(path.name))]
    return sorted(found)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _remove_if_ours(path: Path, token: str) -> None:
    try:
        if msgspec.json.decode(path.read_bytes(), type=_Owner).token == token:
            path.unlink()
    except (FileNotFoundError, msgspec.DecodeError):
        pass


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_default(value: Any) -> Any:
    """msgspec's enc_hook: NumPy scalars and arrays (in a result's `extra`, say) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise NotImplementedError(f"cannot encode {type(value).__name__} as JSON")
