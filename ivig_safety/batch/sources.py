"""Where rows come from: JSON Lines, CSV, a folder of plan files, or stdin, read as bytes one capped line at a
time; :func:`open_source` sniffs the format. A folder's symlinks are never followed.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import stat
import sys
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple

from ..formats.csv_orders import CSV_COLUMNS, CSV_REQUIRED
from .rows import BatchInputError, InputRow

#: A line (or a folder's plan file) longer than this is an error row, never parsed: a plan is a few hundred bytes,
#: and reading an unbounded line would make memory depend on the input.
MAX_LINE_BYTES = 1 << 20
#: Bytes read from a stream at a time (a line may span blocks; a too-long one is skipped a block at a time).
READ_BYTES = 1 << 17
#: File suffixes a folder of plans is read for (each file is one YAML or JSON plan).
PLAN_SUFFIXES = (".yaml", ".yml", ".json")


class _LineReader:
    """Lines of a binary stream, each capped at MAX_LINE_BYTES without ever holding more than ``limit + block``
    bytes of it in memory.

    :meth:`take` hands out lines as *segments*: a segment is either bytes, one or more whole lines exactly as read
    (each with its ``\n``; only the stream's last line may lack it), or None for one line that was too long (its
    bytes are skipped, never held whole). A line is too long when it has more than ``limit`` bytes before its
    ``\n``, a ``\r`` included, as ``readline(limit + 1)`` would see it. :meth:`next` gives one line at a time as
    ``(bytes, False)`` (terminator removed: ``\r\n`` or ``\n``) or ``(b"", True)`` for a line that was too long.
    ``position`` counts the bytes read from the stream, for progress.

    Why segments: with worker processes the parent only reads and forwards lines, and it shares the cores with the
    workers. Finding a chunk's worth of lines with ``find``/``count``/``split`` over a block (in C) and sending
    them as one bytes object costs it a fraction of a microsecond a line, where a ``readline`` and an
    :class:`InputRow` per line, pickled one by one, cost it two.
    """

    def __init__(self, stream: BinaryIO, limit: int = MAX_LINE_BYTES, block: int = READ_BYTES):
        self.stream = stream
        self.limit = limit
        self.block = max(1, block)
        self.position = 0
        # read1: one read of what is there (a pipe's next line may take minutes to come), not a wait for a full block
        self._read = getattr(stream, "read1", None) or stream.read
        self._buffer = b""  # read, and handed out up to _start (where a line starts)
        self._start = 0
        self._newlines = 0  # the \n in _buffer after _start
        self._eof = False
        self._error: BatchInputError | None = None  # reading failed: raised once the whole lines read are out
        self._pushed: deque[bytes | None] = deque()

    def push(self, segment: bytes | None) -> None:
        """Give back a segment :meth:`take` handed out (one line): the next take starts with it."""
        self._pushed.append(segment)

    def next(self) -> tuple[bytes, bool] | None:
        segments, count = self.take(1)
        if not count:
            return None
        return _one_line(segments[0])

    def take(self, count: int) -> tuple[list[bytes | None], int]:
        """Up to ``count`` lines, fewer only at the end of the stream: ``(segments, lines)``.

        If reading fails, the whole lines read before are still handed out (the rows read so far get their
        results); then every call raises the error as :class:`BatchInputError`. The line the failure cut short is
        never handed out as if it were whole."""
        segments: list[bytes | None] = []
        taken = 0
        while taken < count:
            if self._pushed:
                segments.append(self._pushed.popleft())
                taken += 1
                continue
            buffer, start = self._buffer, self._start
            end = buffer.find(b"\n", start)
            if end < 0:  # no whole line in the buffer
                if len(buffer) - start > self.limit:  # a line too long, not over yet: skip the rest of it
                    if not self._skip_line():
                        break
                    segments.append(None)
                    taken += 1
                elif not self._fill():
                    if self._error is None and len(buffer) > start:  # the end: what is left is the last line
                        segments.append(buffer[start:])
                        taken += 1
                        self._buffer, self._start = b"", 0
                    break
                continue
            if end - start > self.limit:  # the first line is too long (and whole in the buffer)
                segments.append(None)
                taken += 1
                self._start = end + 1
                self._newlines -= 1
                continue
            wanted = count - taken
            size = len(buffer) - start
            if self._newlines < wanted and size + self.block <= self.limit and self._fill():
                continue  # more lines fit in the buffer: read them first, for fewer and larger segments
            if wanted == 1 or size > self.limit:  # one line (if the buffer is long, a later one may be too long)
                cut, lines = end + 1, 1
            elif self._newlines <= wanted:  # no line in the buffer is too long: every whole line
                cut, lines = buffer.rfind(b"\n") + 1, self._newlines
            else:  # the first ``wanted`` lines (find, not split: no bytes object per line)
                cut, lines = start, wanted
                for _ in range(wanted):
                    cut = buffer.index(b"\n", cut) + 1
            segments.append(buffer[start:cut])
            taken += lines
            self._start = cut
            self._newlines -= lines
        if not taken and self._error is not None:
            raise self._error
        return segments, taken

    def _fill(self) -> bool:
        """Read one more block into the buffer; False at the end of the stream or if reading failed."""
        if self._eof:
            return False
        data = self._read_block()
        if not data:
            return False
        rest = self._buffer[self._start:] if self._start else self._buffer
        self._buffer, self._start = rest + data if rest else data, 0
        self._newlines += data.count(b"\n")
        return True

    def _skip_line(self) -> bool:
        """Drop the buffer, which holds the start of a line too long, and the rest of that line, a block at a time;
        False if reading failed first."""
        self._buffer, self._start, self._newlines = b"", 0, 0
        while True:
            data = self._read_block()
            if not data:
                return self._error is None
            end = data.find(b"\n")
            if end >= 0:
                self._buffer, self._start = data, end + 1
                self._newlines = data.count(b"\n") - 1
                return True

    def _read_block(self) -> bytes:
        """The next block; b"" at the end of the stream, or if reading failed (the error is kept in ``_error``:
        from then on the stream counts as ended, and :meth:`take` raises once the whole lines are out)."""
        if self._eof:
            return b""
        try:
            data = self._read(self.block)
        except OSError as exc:  # the input went away mid-run: the rows so far stand, the run stops
            self._error = BatchInputError(f"cannot read the input: {exc.strerror or exc}")
            data = b""
        else:
            if data is None:  # a non-blocking stream with nothing to read: never taken for the end of the input
                self._error = BatchInputError("cannot read the input: it is non-blocking and had nothing to read")
                data = b""
        if not data:
            self._eof = True
            return b""
        self.position += len(data)
        return bytes(data)


def _one_line(segment: bytes | None) -> tuple[bytes, bool]:
    """A one-line segment as ``(line without its terminator, False)``, or ``(b"", True)`` for a line too long."""
    if segment is None:
        return b"", True
    if segment.endswith(b"\n"):
        return (segment[:-2] if segment.endswith(b"\r\n") else segment[:-1]), False
    return segment, False


class LineChunk(NamedTuple):
    """Consecutive lines of a JSON Lines or CSV input, as :meth:`_LineReader.take` read them: what the parent sends
    a worker process, which turns them into rows (:meth:`rows`). ``line`` is the number of the first line,
    ``count`` the number of lines, ``context`` the CSV header."""

    line: int
    count: int
    kind: str
    context: Any
    segments: list[bytes | None]

    def rows(self) -> list[InputRow]:
        """One :class:`InputRow` per line, numbered from ``line``, as :meth:`_StreamSource.__iter__` yields them:
        the line without its ``\n`` or ``\r\n`` (the last line of the input, if it has no ``\n``, as it is),
        or an error row for a line too long."""
        number, kind, context = self.line, self.kind, self.context
        rows: list[InputRow] = []
        for segment in self.segments:
            if segment is None:
                rows.append(InputRow(number, "error", _too_long("line")))
                number += 1
                continue
            lines = segment.split(b"\n")
            last = lines.pop()  # b"" after a final \n; else the input's last line, which has none
            for raw in lines:
                rows.append(InputRow(number, kind, raw[:-1] if raw.endswith(b"\r") else raw, context))
                number += 1
            if not segment.endswith(b"\n"):  # even if empty: a last line that was only a byte order mark
                rows.append(InputRow(number, kind, last, context))
                number += 1
        if number - self.line != self.count:  # never: the reader counted what it cut. Fail, never renumber
            raise RuntimeError(f"a chunk from line {self.line} holds {number - self.line} lines, not {self.count}")
        return rows


def row_chunks(rows: Iterator[InputRow], size: int) -> Iterator[list[InputRow]]:
    """Rows in lists of at most ``size``; if the input fails (:class:`BatchInputError`) mid-list, the rows read so
    far come as a last list before the error, so they still get their results."""
    size = max(1, size)
    chunk: list[InputRow] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except BatchInputError:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def _too_long(kind: str) -> str:
    return f"{kind} longer than {MAX_LINE_BYTES // 1024} KiB: not read"


class Source:
    """An opened input: iterate it for :class:`InputRow` s. ``total``/``position`` (bytes, or files for a folder)
    drive the progress bar; ``total`` is None when unknown (stdin)."""

    format: str = ""
    total: int | None = None
    #: Rows arrive without waiting on anyone (a regular file, a folder): one worker may then write its results a
    #: chunk at a time (workers.encoded_batches). Not so for stdin or a pipe, whose next row may take minutes to
    #: come: each result is written as soon as it is known.
    steady: bool = False

    @property
    def position(self) -> int:
        return 0

    def __iter__(self) -> Iterator[InputRow]:
        raise NotImplementedError

    def chunks(self, size: int) -> Iterator[list[InputRow] | LineChunk]:
        """The rows in chunks of at most ``size``, in order: lists of :class:`InputRow` here; a JSON Lines or CSV
        stream gives :class:`LineChunk` s (its lines as read, turned into rows by whoever checks them). If the
        input fails mid-chunk, the rows read so far come as a last chunk before the error."""
        return row_chunks(iter(self), size)

    def close(self) -> None:
        """Release the file handle (stdin is left open)."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _StreamSource(Source):
    """JSON Lines or CSV over a binary stream: each physical line is one row (the CSV header is not a row)."""

    def __init__(self, reader: _LineReader, fmt: str, total: int | None, owned: bool, name: str):
        self.stream, self.format, self.total, self._owned, self.name = reader.stream, fmt, total, owned, name
        self.reader = reader  # may hold lines already read to sniff the format
        self.header: tuple[str, ...] | None = None
        self._first_line = 1
        if fmt == "csv":
            self.header = self._read_header()
            self._first_line = 2

    @property
    def position(self) -> int:
        return self.reader.position

    def _read_header(self) -> tuple[str, ...]:
        item = self.reader.next()
        if item is None:
            raise BatchInputError(f"{self.name}: the file is empty (a CSV file needs a header line)")
        raw, too_long = item
        if too_long:
            raise BatchInputError(f"{self.name}: the CSV header line is longer than {MAX_LINE_BYTES} bytes")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BatchInputError(f"{self.name}: the CSV header line is not UTF-8 text") from None
        try:
            cells = next(csv.reader([text], strict=True), [])
        except csv.Error as exc:
            raise BatchInputError(f"{self.name}: unreadable CSV header: {exc}") from None
        header = tuple(_column_name(c) for c in cells)
        return check_csv_header(header, self.name)

    def __iter__(self) -> Iterator[InputRow]:
        # a steady file is read a chunk at a time; from a pipe, each line as soon as it is there
        for chunk in self.chunks(_ITER_ROWS if self.steady else 1):
            yield from chunk.rows()

    def chunks(self, size: int) -> Iterator[LineChunk]:
        kind, context = self.format, self.header
        line = self._first_line
        bom = kind == "jsonl"  # a UTF-8 byte order mark (some exporters write one) before the first line read
        while True:
            segments, count = self.reader.take(max(1, size))
            if not count:
                return
            if bom:
                for index, segment in enumerate(segments):
                    if segment is not None:  # the first line that is not too long
                        if segment.startswith(b"\xef\xbb\xbf"):
                            segments[index] = segment[3:]
                        bom = False
                        break
            yield LineChunk(line, count, kind, context, segments)
            line += count

    def close(self) -> None:
        if self._owned:
            self.stream.close()


class _FolderSource(Source):
    """A folder of plan files (.yaml, .yml, .json), one plan per file, in file-name order; ``line`` is the
    file's 1-based position in that order and ``id`` falls back to the file name.

    Symbolic links are never followed: a link with a plan suffix becomes an error row naming it (its target is not
    read, so nothing of it is echoed), and every file is opened with O_NOFOLLOW (a file swapped for a link after
    the listing is refused the same way) and read only if it is a regular file. Other entries (folders, FIFOs,
    devices) are not plans and are skipped, as before.
    """

    format = "folder"

    def __init__(self, folder: Path):
        self.folder = folder
        try:
            entries = sorted((e.name, e.is_symlink()) for e in os.scandir(folder)
                             if e.name.lower().endswith(PLAN_SUFFIXES)
                             and (e.is_symlink() or e.is_file(follow_symlinks=False)))
        except OSError as exc:
            raise BatchInputError(f"{folder}: cannot read the folder: {exc.strerror or exc}") from None
        if not entries:
            raise BatchInputError(f"{folder}: no plan files ({', '.join(PLAN_SUFFIXES)}) in the folder")
        self.entries = entries
        self.names = [name for name, _ in entries]
        self.total = len(entries)
        self.steady = True
        self._done = 0

    @property
    def position(self) -> int:
        return self._done

    def __iter__(self) -> Iterator[InputRow]:
        for number, (name, link) in enumerate(self.entries, 1):
            self._done = number
            if link:
                yield InputRow(number, "error", _SYMLINK, name)
                continue
            try:
                data = _read_plan_file(self.folder / name)
            except _NotAPlanFile as exc:
                yield InputRow(number, "error", str(exc), name)
                continue
            if data is None:
                yield InputRow(number, "error", _too_long("file"), name)
                continue
            yield InputRow(number, "file", data, name)


#: Lines read at a time when a steady stream source is iterated row by row.
_ITER_ROWS = 256

_SYMLINK = "a symbolic link: not followed (only regular files in the folder are read)"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class _NotAPlanFile(Exception):
    """A folder entry that cannot be read as a plan file; the message names the problem, never the content."""


def _read_plan_file(path: Path) -> bytes | None:
    """The file's bytes, or None if it is longer than MAX_LINE_BYTES. Opened without following a symlink and
    without blocking (a FIFO swapped in), and read only if it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _NotAPlanFile(_SYMLINK) from None
        raise _NotAPlanFile(f"cannot read the file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _NotAPlanFile("not a regular file: not read")
            data = handle.read(MAX_LINE_BYTES + 1)
        except OSError as exc:
            raise _NotAPlanFile(f"cannot read the file: {exc.strerror or exc}") from None
    return None if len(data) > MAX_LINE_BYTES else data


def _column_name(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def check_csv_header(header: tuple[str, ...], name: str = "CSV") -> tuple[str, ...]:
    """Refuse a header that would make every row fail the same way: unknown, repeated or missing columns.

    Why refuse the whole file: a misspelt column (``wieght``) is one mistake, not a thousand invalid orders.
    """
    unknown = [c for c in header if c not in CSV_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    missing = [c for c in CSV_REQUIRED if c not in header]
    if "dose_per_course" not in header and "dose_per_day" not in header:
        missing.append("dose_per_course or dose_per_day")
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(map(repr, repeated))}")
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if problems:
        raise BatchInputError(f"{name}: CSV header: {'; '.join(problems)} (columns: {', '.join(CSV_COLUMNS)})")
    return header


def _sniff(reader: _LineReader) -> str | None:
    """'jsonl' if the first non-blank line starts with '{', 'csv' otherwise; None for an input with no content.

    The lines read are pushed back, so nothing is lost; blank lines are cheap to hold, and a long run of them
    stops the sniffing (JSON Lines is then assumed).
    """
    seen: list[bytes | None] = []
    verdict: str | None = None
    while len(seen) < 10_000:
        segments, count = reader.take(1)
        if not count:
            break
        seen += segments
        raw, too_long = _one_line(segments[0])
        text = raw.lstrip(b"\xef\xbb\xbf \t\r\f\v")
        if too_long or text:
            verdict = "jsonl" if text.startswith(b"{") else "csv"
            break
    else:
        verdict = "jsonl"
    for segment in seen:
        reader.push(segment)
    return verdict


def open_source(path: str | os.PathLike[str], input_format: str = "auto",
                stdin: BinaryIO | None = None) -> Source:
    """Open INPUT: ``-`` (stdin), a folder of plan files, or a JSON Lines / CSV file.

    The format comes from ``input_format``, else the suffix (.csv; .jsonl, .ndjson, .json), else the content (a
    first line starting with ``{`` is JSON Lines). Raises :class:`BatchInputError` when the input cannot be read.
    """
    name = str(path)
    if name == "-":
        stream: BinaryIO = stdin if stdin is not None else sys.stdin.buffer
        return _open_stream(stream, input_format, None, False, "stdin")
    target = Path(name)
    if target.is_dir():
        return _FolderSource(target)
    try:
        stream = target.open("rb")
        info = os.fstat(stream.fileno())
        total = info.st_size
    except OSError as exc:
        raise BatchInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if input_format == "auto":
        suffix = target.suffix.lower()
        input_format = "csv" if suffix == ".csv" else "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "auto"
    try:
        source = _open_stream(stream, input_format, total, True, name)
        source.steady = stat.S_ISREG(info.st_mode)  # a named pipe is not
        return source
    except BaseException:
        stream.close()
        raise


def _open_stream(stream: BinaryIO, input_format: str, total: int | None, owned: bool, name: str) -> Source:
    reader_probe = _LineReader(stream)
    try:
        sniffed = _sniff(reader_probe)
    except OSError as exc:
        raise BatchInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if sniffed is None:
        raise BatchInputError(f"{name}: the input is empty")
    fmt = sniffed if input_format == "auto" else input_format
    return _StreamSource(reader_probe, fmt, total, owned, name)
