"""Check many plans in one run: read JSON Lines, CSV, a folder of plan files or stdin; write one result per row.

Why this module is built the way it is:

* **Every input row yields exactly one output row, in input order.** A corrupt, empty, huge or non-UTF-8 line
  becomes an ``error`` row naming the line and the problem; an unexpected exception while decoding, checking or
  encoding one row (an :class:`EngineError`, a bug, an id orjson cannot write) becomes an ``error`` row too, marked
  ``internal`` (not the row's fault: it was left unchecked), and the run goes on. A pharmacist reconciling a night's
  orders must be able to match every input line with its output line, and "the row that vanished" is the failure
  that hides an unchecked order. The CLI exits 4 when any row was left unchecked.
* **Streaming.** Input is read as bytes, one line at a time with a length cap, and decoded per line; at most a
  bounded window of rows is in flight. Memory stays flat on a million rows, and results are written and flushed
  as they come, so an interrupted run leaves a valid prefix of the output.
* **One physical line is one row**, in CSV too: a quoted field may not span lines. Otherwise one unbalanced quote
  would swallow the rest of the file into a single record and every following order would go unchecked.
* **Processes, not threads, for ``workers > 1``.** The checker is thread-safe, but threads share one GIL and the
  work is CPU-bound Python; each worker process builds its own :class:`Checker` in an initializer. The parent only
  reads lines and writes results, so the heavy work (decoding, validation, rules, messages) scales with the workers.
  ``concurrent.futures`` is used rather than ``multiprocessing.Pool.imap`` because a worker that dies (a crash in
  the C core) makes ``imap`` wait forever, while the executor reports it. The rows of a chunk that was lost are
  then re-run one at a time, alone in a fresh pool, so the one row that kills a worker is found and becomes an
  ``error`` row ("a worker process died again ..."); every other row of the chunk keeps its verdict.
* **A folder's symlinks are never followed** (an error row names the file; its target is never read or echoed),
  and plan files are opened with O_NOFOLLOW and read only if they are regular files.
* **Output text is terminal-safe**: JSON has control and bidi characters escaped, CSV cells go through
  :func:`render.clean_text`.
* **Duplicate keys are an error** in JSON Lines, as in YAML plans (yamlio.py): a row with two ``rate`` keys would
  otherwise be judged on one of them without a word.

Nothing clinical happens here: every verdict comes from :meth:`Checker.check`.
"""

from __future__ import annotations

import csv
import errno
import gc
import io
import json
import multiprocessing
import os
import re
import signal
import stat
import sys
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, NamedTuple

from ..check import Checker, get_checker
from ..model.errors import EngineError, InvalidPlanError
from ..formats.render import clean_text, dumps_json
from ..knowledge.yamlio import YamlError, parse_yaml

#: A line (or a folder's plan file) longer than this is an error row, never parsed: a plan is a few hundred bytes,
#: and reading an unbounded line would make memory depend on the input.
MAX_LINE_BYTES = 1 << 20
#: Rows sent to a worker process at a time, and chunks in flight per worker: enough to hide the round trip,
#: small enough that memory stays bounded and output keeps flowing.
CHUNK_ROWS = 64
CHUNKS_PER_WORKER = 4
#: File suffixes a folder of plans is read for (each file is one YAML or JSON plan).
PLAN_SUFFIXES = (".yaml", ".yml", ".json")

CSV_COLUMNS = ("id", "product", "indication", "weight", "height", "age", "risk_factors", "dose_per_course",
               "dose_per_day", "days", "steps")
CSV_REQUIRED = ("product", "indication", "weight", "days", "steps")

OUTPUT_FIELDS = ("line", "id", "verdict", "kinds", "max_mg_per_kg_min", "max_ml_per_h", "findings", "errors")
CSV_OUTPUT_FIELDS = ("line", "id", "verdict", "kinds", "max_mg_per_kg_min", "max_ml_per_h", "messages", "errors")


class BatchInputError(Exception):
    """The input cannot be read at all (missing, unreadable, empty, a CSV header without the needed columns)."""


class InputRow(NamedTuple):
    """One row of input, as little processed as possible so the work happens in the worker processes.

    ``kind`` says how to read ``payload``: ``jsonl`` and ``csv`` carry the raw line (bytes, terminator removed),
    ``file`` a plan file's bytes, ``plan`` an already-parsed plan (the Python API), ``error`` a message (a line
    the reader refused, e.g. too long). ``context`` is the CSV header, or a folder file's name.
    """

    line: int
    kind: str
    payload: Any
    context: Any = None


class BatchResult(NamedTuple):
    """One output row. ``verdict`` is ok, warn, block or ``error`` (not checked: see ``errors``). ``internal`` marks
    an error row that is not the input's fault (the check, the encoding or a worker failed): the row was left
    unchecked, and the run must not pass as if it had been checked. It is not part of the written row."""

    line: int
    id: str | int | None
    verdict: str
    kinds: tuple[str, ...]
    max_mg_per_kg_min: float | None
    max_ml_per_h: float | None
    findings: tuple[dict[str, Any], ...]
    errors: tuple[dict[str, str], ...]
    internal: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines form of the row."""
        return {"line": self.line, "id": self.id, "verdict": self.verdict, "kinds": list(self.kinds),
                "max_mg_per_kg_min": self.max_mg_per_kg_min, "max_ml_per_h": self.max_ml_per_h,
                "findings": list(self.findings), "errors": list(self.errors)}


# ---------------------------------------------------------------------------------------------------- readers


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
        total = os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise BatchInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if input_format == "auto":
        suffix = target.suffix.lower()
        input_format = "csv" if suffix == ".csv" else "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "auto"
    try:
        return _open_stream(stream, input_format, total, True, name)
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


# ---------------------------------------------------------------------------------------------- CSV -> plan

_STEP_SEPARATOR = re.compile(r"\s+(?:x|×|for)\s+", re.IGNORECASE)
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_steps(text: str) -> list[dict[str, str]]:
    """'0.01 mL/kg/min x 30 min; 0.04 mL/kg/min' -> [{rate, duration}, {rate}]. Empty segments are ignored;
    whatever does not read as a rate or a duration is passed on for the plan's validation to name."""
    steps = []
    for segment in text.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        parts = _STEP_SEPARATOR.split(segment, maxsplit=1)
        step = {"rate": parts[0].strip()}
        if len(parts) > 1:
            step["duration"] = parts[1].strip()
        steps.append(step)
    return steps


def csv_row_to_plan(row: Mapping[str, str]) -> dict[str, Any]:
    """Map one CSV row (column -> cell) to the plan dict :meth:`Checker.check` takes.

    Empty cells are left out, so the plan's validation says which field is missing. ``age`` and ``days`` become
    numbers when they are plain numbers; anything else is passed on as text for validation to judge (an age may be
    "18 months"). ``risk_factors`` is ``;``-separated.
    """
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    plan: dict[str, Any] = {}
    if cell("id"):
        plan["id"] = cell("id")
    for name in ("product", "indication"):
        if cell(name):
            plan[name] = cell(name)
    patient: dict[str, Any] = {name: cell(name) for name in ("weight", "height") if cell(name)}
    if age := cell("age"):
        patient["age"] = float(age) if _NUMBER.match(age) else age
    risks = [r.strip() for r in cell("risk_factors").split(";") if r.strip()]
    if risks:
        patient["risk_factors"] = risks
    plan["patient"] = patient
    dose: dict[str, Any] = {name: cell(f"dose_{name}") for name in ("per_course", "per_day") if cell(f"dose_{name}")}
    if days := cell("days"):
        dose["days"] = int(days) if _INTEGER.match(days) else days
    plan["dose"] = dose
    if cell("steps"):
        plan["steps"] = parse_steps(cell("steps"))
    return plan


# ------------------------------------------------------------------------------------------ one row -> result


class _RowError(Exception):
    """A row that could not be read into a plan (decode, JSON, CSV shape)."""

    def __init__(self, msg: str, loc: str = "", plan_id: Any = None):
        super().__init__(msg)
        self.errors = ({"loc": loc, "msg": msg},)
        self.plan_id = plan_id  # whatever id could be read, so the row can still be matched to its order


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    return result


_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _RowError(f"{what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})") \
            from None
    if not text.strip():
        raise _RowError(f"empty {what}: no plan")
    return text


def _decode(row: InputRow) -> tuple[Any, Any]:
    """The plan data of a row and the id to echo (before validation: an invalid row keeps its id)."""
    kind = row.kind
    if kind == "jsonl":
        text = _text(row.payload, "line")
        try:
            data = _JSON.decode(text)
        except (ValueError, RecursionError) as exc:
            raise _RowError(f"malformed JSON: {exc}") from None
        return data, data.get("id") if isinstance(data, dict) else None
    if kind == "csv":
        text = _text(row.payload, "line")
        header = row.context
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise _RowError(f"malformed CSV: {exc}", plan_id=_csv_id(text, header)) from None
        if len(cells) != len(header):
            raise _RowError(f"{len(cells)} cells, the header has {len(header)}", plan_id=_csv_id(text, header))
        values = dict(zip(header, cells, strict=True))
        return csv_row_to_plan(values), values.get("id", "").strip() or None
    if kind == "file":
        try:
            text = row.payload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _RowError(f"file is not UTF-8 text (byte at position {exc.start + 1})") from None
        if not text.strip():
            raise _RowError("empty file: no plan")
        try:
            data = parse_yaml(text)
        except YamlError as exc:
            raise _RowError(f"malformed YAML/JSON: {exc}") from None
        plan_id = data.get("id") if isinstance(data, dict) else None
        return data, plan_id if plan_id is not None else row.context
    if kind == "plan":
        data = row.payload
        return data, data.get("id") if isinstance(data, Mapping) else None
    if kind == "error":
        raise _RowError(str(row.payload))
    raise _RowError(f"internal error: unknown row kind {kind!r}")


def _csv_id(text: str, header: tuple[str, ...]) -> str | None:
    """The id cell of a row that cannot be used, read leniently, for the error row."""
    if "id" not in header:
        return None
    try:
        cells = next(csv.reader([text]), [])
    except csv.Error:
        return None
    index = header.index("id")
    return cells[index].strip() or None if index < len(cells) else None


def _echo(value: Any) -> str | int | None:
    """An id is echoed only when it is one (a string or a whole number), so output stays well-typed."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value


def _error(line: int, plan_id: Any, errors: Iterable[dict[str, str]], internal: bool = False) -> BatchResult:
    return BatchResult(line, _echo(plan_id), "error", (), None, None, (), tuple(errors), internal)


def _internal(line: int, plan_id: Any, why: str) -> BatchResult:
    """An error row for a row left unchecked by something that is not the row's fault."""
    return _error(line, plan_id, ({"loc": "", "msg": why},), internal=True)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def process_row(row: InputRow, checker: Checker) -> BatchResult:
    """Check one row. Never raises for anything the row contains: every failure is an ``error`` result (marked
    ``internal`` when it is not the input's fault)."""
    plan_id: Any = row.context if row.kind == "file" or (row.kind == "error" and isinstance(row.context, str)) \
        else None
    try:
        data, plan_id = _decode(row)
        report = checker.check(data)
        findings = report.findings
        kinds = tuple(dict.fromkeys(f.kind for f in findings))
        cap = report.suggested_max_rate
        report_id = report.plan.id
        return BatchResult(row.line, report_id if report_id is not None else _echo(plan_id), report.verdict, kinds,
                           cap.mg_per_kg_min, cap.ml_per_h, tuple(f.model_dump(mode="json") for f in findings), ())
    except _RowError as exc:
        return _error(row.line, exc.plan_id if exc.plan_id is not None else plan_id, exc.errors)
    except InvalidPlanError as exc:
        return _error(row.line, plan_id, (e.as_dict() for e in exc.errors))
    except EngineError as exc:
        return _internal(row.line, plan_id, f"internal error, no verdict: {exc}")
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the run; it is reported, not hidden
        return _internal(row.line, plan_id, f"internal error, no verdict: {_describe(exc)}")


def encode_row(result: BatchResult, encode: Callable[[BatchResult], bytes]) -> tuple[bytes, BatchResult]:
    """``encode(result)`` and the result it stands for. If encoding fails, an internal error row for the same line
    takes its place (without the id if even that cannot be written): one row that cannot be written costs that
    row, never the run or its chunk."""
    try:
        return encode(result), result
    except Exception as exc:  # noqa: BLE001
        replacement = _internal(result.line, result.id,
                                f"internal error, the result could not be written: {_describe(exc)}")
    try:
        return encode(replacement), replacement
    except Exception:  # noqa: BLE001 - the id itself cannot be written: drop it, keep the line number
        replacement = replacement._replace(id=None)
        return encode(replacement), replacement


def _encode_results(results: Iterable[BatchResult], fmt: str) -> tuple[bytes, list[Tally]]:
    """Rows serialised one by one, with their tallies (of what was written, error rows that replaced a row that
    could not be written included)."""
    encode = ENCODERS[fmt]
    parts: list[bytes] = []
    tallies: list[Tally] = []
    for result in results:
        data, written = encode_row(result, encode)
        parts.append(data)
        tallies.append(tally(written))
    return b"".join(parts), tallies


# ----------------------------------------------------------------------------------------------- check_many

_WORKER_CHECKER: Checker | None = None


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel to end this worker when the parent dies (even by SIGKILL). Without it an orphaned
    worker waits forever on the task queue, whose write end its sibling workers still hold."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the executor's own checks are all there is
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(rules_dir: str | None, policy: str | None, parent: int) -> None:
    """Each worker process gets its own rule engine: durable_rules handles and the engine's locks belong to one
    process, and the parent may have been using them when it forked.

    The loaded rules, catalogue and policy are inherited through fork when the parent had loaded them (the CLI
    does), which saves each worker the half second of loading them again. Ctrl-C is left to the parent, which shuts
    the pool down and still prints what it finished.
    """
    global _WORKER_CHECKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    checker = get_checker(rules_dir, policy)
    checker.renew_engine()
    _WORKER_CHECKER = checker
    gc.freeze()  # the rules, catalogue and pint registry live as long as the process: keep them out of GC passes


def _work(chunk: list[InputRow]) -> list[BatchResult]:
    checker = _WORKER_CHECKER
    assert checker is not None, "worker not initialised"
    return [process_row(row, checker) for row in chunk]


def _work_encoded(chunk: list[InputRow], fmt: str) -> tuple[bytes, list[Tally]]:
    """Check a chunk and serialise it here, in the worker: the parent then only writes bytes and adds counts.

    Why: sending results back as objects made the parent unpickle and re-serialise about 2 KB per row, which kept
    it busy a fifth of the time and held two workers well below twice one.
    """
    return _encode_results(_work(chunk), fmt)


def _ready() -> bool:
    return _WORKER_CHECKER is not None


def _as_rows(plans: Iterable[Any]) -> Iterator[InputRow]:
    for number, item in enumerate(plans, 1):
        yield item if isinstance(item, InputRow) else InputRow(number, "plan", item)


def _chunks(rows: Iterator[InputRow], size: int) -> Iterator[list[InputRow]]:
    chunk: list[InputRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_many(plans: Iterable[Any], *, workers: int = 1, policy: str | os.PathLike[str] | None = None,
               rules_dir: str | os.PathLike[str] | None = None, chunk_rows: int = CHUNK_ROWS
               ) -> Iterator[BatchResult]:
    """Check an iterable of plans (dicts, or :class:`InputRow` s from :func:`open_source`); yield one
    :class:`BatchResult` per item, in input order, whatever the item contains.

    The rules and policy are loaded now, so a bad policy file raises :class:`RuleFileError` here rather than at the
    first result. With ``workers > 1`` the worker processes are started now too (before the caller starts threads
    such as a progress bar), and stopped when the iterator is exhausted or closed.
    """
    rules = str(rules_dir) if rules_dir is not None else None
    pol = str(policy) if policy is not None else None
    checker = get_checker(rules, pol)
    rows = _as_rows(plans)
    if workers <= 1:
        return (process_row(row, checker) for row in rows)
    return _Parallel(rows, workers, rules, pol, chunk_rows).results()


def _succeeded(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class _Parallel:
    """Ordered, bounded fan-out over worker processes; a dead worker costs only the row that killed it.

    With ``fmt`` set, each chunk comes back as ``(output bytes, tallies)`` (see :func:`_work_encoded`); without
    it, as :class:`BatchResult` s.

    Why rows are re-run, not voided: when a worker dies, the executor fails every chunk in flight, and nothing says
    which row was at fault. The chunk at the head of the queue is then re-run one row at a time, each row alone in a
    fresh pool (nothing else in flight, so a death is that row's): a row that kills a worker again becomes an
    internal error row saying so, every other row gets its verdict. The other chunks that were in flight are
    submitted again (each is isolated the same way if it fails again when its turn comes). Any other failure of a
    chunk (a result that cannot be sent back) is isolated the same way.
    """

    def __init__(self, rows: Iterator[InputRow], workers: int, rules: str | None, policy: str | None,
                 chunk_rows: int, fmt: str | None = None):
        self.rows, self.workers, self.rules, self.policy, self.fmt = rows, workers, rules, policy, fmt
        self.chunk_rows = max(1, chunk_rows)
        self.window = workers * CHUNKS_PER_WORKER
        self.pending: deque[tuple[Future[Any], list[InputRow]]] = deque()
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        methods = multiprocessing.get_all_start_methods()
        # fork: workers start in milliseconds instead of re-importing pint and pydantic (about a second each)
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        for stream in (sys.stdout, sys.stderr):  # a forked child flushes inherited buffers at exit: empty them
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                   initargs=(self.rules, self.policy, os.getpid()))
        try:  # start every worker now and surface an initializer failure here, not as error rows later
            for ready in [pool.submit(_ready) for _ in range(self.workers)]:
                ready.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return pool

    def chunks(self) -> Iterator[Any]:
        """One item per chunk, in input order: a list of results, or (bytes, tallies) when ``fmt`` is set."""
        chunks = _chunks(self.rows, self.chunk_rows)
        exhausted = False
        try:
            while True:
                while not exhausted and len(self.pending) < self.window:
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    future = self._submit(chunk)  # first: a restart inside it replaces self.pending
                    self.pending.append((future, chunk))
                if not self.pending:
                    return
                future, chunk = self.pending.popleft()
                try:
                    done = future.result()
                except BrokenProcessPool as exc:
                    yield self._isolate(chunk, f"a worker process died ({exc})")
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                    yield self._isolate(chunk, _describe(exc))
                    continue
                yield done
        finally:
            self._stop()

    def results(self) -> Iterator[BatchResult]:
        for chunk in self.chunks():
            yield from chunk

    def _stop(self) -> None:
        # wait=True: Python 3.11's exit hook fails on a pool shut down without waiting (a closed wakeup pipe).
        # The wait is short: queued chunks are cancelled and at most one chunk per worker is finishing.
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _call(self, chunk: list[InputRow]) -> Future[Any]:
        if self.fmt is None:
            return self.pool.submit(_work, chunk)
        return self.pool.submit(_work_encoded, chunk, self.fmt)

    def _restart(self) -> None:
        """A fresh pool; the chunks in flight that did not finish are submitted to it again, in order."""
        self._stop()
        self.pool = self._start()
        self.pending = deque((future if _succeeded(future) else self._call(chunk), chunk)
                             for future, chunk in self.pending)

    def _submit(self, chunk: list[InputRow]) -> Future[Any]:
        try:
            return self._call(chunk)
        except BrokenProcessPool:  # a worker died since the last result: start again, then submit
            self._restart()
            return self._call(chunk)

    def _isolate(self, chunk: list[InputRow], why: str) -> Any:
        """Re-run each row of a lost chunk alone, once, with nothing else in flight; then resume the rest."""
        self._stop()  # running chunks finish (their results are kept), queued ones are cancelled
        self.pool = self._start()
        outcomes = [self._alone(row, why) for row in chunk]
        self.pending = deque((future if _succeeded(future) else self._call(c), c) for future, c in self.pending)
        if self.fmt is None:
            return [result for outcome in outcomes for result in outcome]
        return b"".join(data for data, _ in outcomes), [t for _, tallies in outcomes for t in tallies]

    def _alone(self, row: InputRow, first: str) -> Any:
        try:
            return self._call([row]).result()
        except BrokenProcessPool as exc:
            self._stop()
            self.pool = self._start()
            return self._lost([row], f"a worker process died again when this row was re-run alone ({exc}); "
                                     f"the first time: {first}")
        except Exception as exc:  # noqa: BLE001
            return self._lost([row], f"{_describe(exc)} when this row was re-run alone; the first time: {first}")

    def _lost(self, chunk: list[InputRow], why: str) -> Any:
        results = [_internal(row.line, row.context if row.kind == "file" else None,
                             f"internal error, not checked: {why}") for row in chunk]
        if self.fmt is None:
            return results
        return _encode_results(results, self.fmt)


# --------------------------------------------------------------------------------------------------- writers


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A text cell that a spreadsheet will not run as a formula (ids and messages echo the input), on one line,
    with control and bidi characters shown escaped (:func:`render.clean_text`): CSV is read on terminals too."""
    text = text.replace("\r", " ").replace("\n", " ")
    text = "'" + text if text.startswith(_FORMULA_START) else text
    return clean_text(text)


def encode_jsonl(result: BatchResult) -> bytes:
    """One JSON Lines row (OUTPUT_FIELDS): control and bidi characters escaped, integers beyond 64 bits written
    (:func:`render.dumps_json`)."""
    return dumps_json(result.to_dict()) + b"\n"


def _csv_line(cells: Iterable[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


def encode_csv(result: BatchResult) -> bytes:
    """One CSV row (CSV_OUTPUT_FIELDS): kinds ``;``-separated; finding messages and field errors
    `` | ``-separated; always one physical line."""
    return _csv_line((
        result.line,
        "" if result.id is None else _cell(str(result.id)),
        result.verdict,
        ";".join(result.kinds),
        "" if result.max_mg_per_kg_min is None else result.max_mg_per_kg_min,
        "" if result.max_ml_per_h is None else result.max_ml_per_h,
        _cell(" | ".join(f["message"] for f in result.findings)),
        _cell(" | ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in result.errors)),
    ))


ENCODERS: dict[str, Callable[[BatchResult], bytes]] = {"jsonl": encode_jsonl, "csv": encode_csv}


class Writer:
    """Writes result rows and flushes after each write, so output appears as it is produced and a killed run
    leaves whole rows (at most one partial line at the end)."""

    format = ""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.encode = ENCODERS[self.format]
        self.start()

    def start(self) -> None:
        """Anything the format needs before the first row (the CSV header)."""

    def write(self, result: BatchResult) -> None:
        self.write_encoded(self.encode(result))

    def write_encoded(self, data: bytes) -> None:
        self.stream.write(data)
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    format = "jsonl"


class CsvWriter(Writer):
    format = "csv"

    def start(self) -> None:
        self.write_encoded(_csv_line(CSV_OUTPUT_FIELDS))


WRITERS: dict[str, Callable[[BinaryIO], Writer]] = {"jsonl": JsonlWriter, "csv": CsvWriter}


# --------------------------------------------------------------------------------------------------- summary

#: What the summary needs of a row: verdict, finding kinds, rule ids (each once per row), and whether it is an error
#: row left unchecked by an internal error.
Tally = tuple[str, tuple[str, ...], tuple[str, ...], bool]


def tally(result: BatchResult) -> Tally:
    return (result.verdict, result.kinds, tuple(dict.fromkeys(f["rule"] for f in result.findings)),
            result.internal)


@dataclass
class Summary:
    """Counts over the rows written: verdicts, and per finding kind and per rule the rows in which it appears;
    ``internal`` counts the error rows left unchecked by an internal error (not by invalid input)."""

    rows: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    internal: int = 0

    def add(self, result: BatchResult) -> None:
        self.add_tally(tally(result))

    def add_tally(self, counts: Tally | tuple[str, tuple[str, ...], tuple[str, ...]]) -> None:
        verdict, kinds, rules = counts[0], counts[1], counts[2]
        self.rows += 1
        self.verdicts[verdict] += 1
        if len(counts) > 3 and counts[3]:
            self.internal += 1
        if kinds:
            self.kinds.update(kinds)
        if rules:
            self.rules.update(rules)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, **{v: self.verdicts.get(v, 0) for v in ("ok", "warn", "block", "error")},
                "internal": self.internal,
                "kinds": dict(sorted(self.kinds.items())), "rules": dict(sorted(self.rules.items()))}


def encoded_batches(plans: Iterable[Any], fmt: str, *, workers: int = 1,
                    policy: str | os.PathLike[str] | None = None, rules_dir: str | os.PathLike[str] | None = None,
                    chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[bytes, list[Tally]]]:
    """:func:`check_many` for writers: yields ``(output bytes, tallies)``, one row at a time with one worker and
    one chunk at a time with several (serialised in the workers), in input order. Eager like check_many."""
    rules = str(rules_dir) if rules_dir is not None else None
    pol = str(policy) if policy is not None else None
    if workers <= 1:
        results = check_many(plans, policy=pol, rules_dir=rules)
        return (_encode_results((r,), fmt) for r in results)
    get_checker(rules, pol)  # a bad rule or policy file raises here, in the caller, before any worker starts
    return _Parallel(_as_rows(plans), workers, rules, pol, chunk_rows, fmt).chunks()


def run_batch(source: Iterable[Any], writer: Writer, *, workers: int = 1, policy: str | None = None,
              on_rows: Callable[[int], None] | None = None) -> Summary:
    """Check every row of ``source``, write the results as they come, and return the counts."""
    summary = Summary()
    for data, tallies in encoded_batches(source, writer.format, workers=workers, policy=policy):
        writer.write_encoded(data)
        for counts in tallies:
            summary.add_tally(counts)
        if on_rows is not None:
            on_rows(len(tallies))
    return summary


__all__ = ["BatchInputError", "BatchResult", "InputRow", "Source", "Summary", "check_many", "csv_row_to_plan",
           "open_source", "parse_steps", "process_row", "run_batch", "encoded_batches", "JsonlWriter", "CsvWriter",
           "WRITERS", "ENCODERS", "MAX_LINE_BYTES", "CSV_COLUMNS", "OUTPUT_FIELDS", "CSV_OUTPUT_FIELDS"]
