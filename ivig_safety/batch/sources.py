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
from typing import Any, BinaryIO, Iterator

from ..formats.csv_orders import CSV_COLUMNS, CSV_REQUIRED
from .rows import BatchInputError, InputRow

#: A line (or a folder's plan file) longer than this is an error row, never parsed: a plan is a few hundred bytes,
#: and reading an unbounded line would make memory depend on the input.
MAX_LINE_BYTES = 1 << 20
#: File suffixes a folder of plans is read for (each file is one YAML or JSON plan).
PLAN_SUFFIXES = (".yaml", ".yml", ".json")


class _LineReader:
    """Lines of a binary stream, each capped at MAX_LINE_BYTES without ever holding more than that in memory.

    Yields ``(bytes, False)`` for a line (terminator removed) or ``(b"", True)`` for a line that was too long (its
    bytes are skipped). ``position`` counts the bytes consumed, for progress.
    """

    def __init__(self, stream: BinaryIO, limit: int = MAX_LINE_BYTES):
        self.stream = stream
        self.limit = limit
        self.position = 0
        self._pushed: deque[tuple[bytes, bool]] = deque()

    def push(self, item: tuple[bytes, bool]) -> None:
        self._pushed.append(item)

    def next(self) -> tuple[bytes, bool] | None:
        if self._pushed:
            return self._pushed.popleft()
        try:
            raw = self.stream.readline(self.limit + 1)
            if not raw:
                return None
            self.position += len(raw)
            if len(raw) > self.limit and not raw.endswith(b"\n"):
                while True:  # skip the rest of the over-long line in bounded reads
                    rest = self.stream.readline(1 << 16)
                    self.position += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                return b"", True
        except OSError as exc:  # the input went away mid-run: the rows so far stand, the run stops
            raise BatchInputError(f"cannot read the input: {exc.strerror or exc}") from None
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        return raw, False


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
        kind, context = self.format, self.header
        line = self._first_line - 1
        first = True
        while True:
            item = self.reader.next()
            if item is None:
                return
            line += 1
            raw, too_long = item
            if too_long:
                yield InputRow(line, "error", _too_long("line"))
                continue
            if first and kind == "jsonl" and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte order mark (some exporters write one)
            first = False
            yield InputRow(line, kind, raw, context)

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
    seen: list[tuple[bytes, bool]] = []
    verdict: str | None = None
    while len(seen) < 10_000:
        item = reader.next()
        if item is None:
            break
        seen.append(item)
        raw, too_long = item
        text = raw.lstrip(b"\xef\xbb\xbf \t\r\f\v")
        if too_long or text:
            verdict = "jsonl" if text.startswith(b"{") else "csv"
            break
    else:
        verdict = "jsonl"
    for item in seen:
        reader.push(item)
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
