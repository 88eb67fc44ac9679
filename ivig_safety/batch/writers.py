"""Result rows out: JSON Lines and CSV encoders (terminal- and spreadsheet-safe), writers that flush every row, and
:func:`encode_row`, which turns a row that cannot be written into an internal error row for the same line.
"""

from __future__ import annotations

import csv
import io
from typing import Any, BinaryIO, Callable, Iterable

from ..formats.render import clean_text, dumps_json
from .rows import BatchResult, _describe, _internal
from .summary import Summary

OUTPUT_FIELDS = ("line", "id", "verdict", "kinds", "max_mg_per_kg_min", "max_ml_per_h", "findings", "errors")
CSV_OUTPUT_FIELDS = ("line", "id", "verdict", "kinds", "max_mg_per_kg_min", "max_ml_per_h", "messages", "errors")


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


def _encode_results(results: Iterable[BatchResult], fmt: str) -> tuple[bytes, Summary]:
    """Rows serialised one by one, and the counts of what was written (error rows that replaced a row that could
    not be written included).

    Why one summary per chunk rather than a tally per row: with workers, the parent unpickled and added up every
    row's tally, a fifth of its work; a chunk's counts are now added up in the worker that checked it."""
    encode = ENCODERS[fmt]
    parts: list[bytes] = []
    counted: list[BatchResult] = []
    for result in results:
        data, written = encode_row(result, encode)
        parts.append(data)
        counted.append(written)
    summary = Summary()
    summary.add_all(counted)
    return b"".join(parts), summary


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
    # BatchResult.to_dict, with the tuples left as they are: orjson writes a tuple as an array, as it does a list
    return dumps_json({"line": result.line, "id": result.id, "verdict": result.verdict, "kinds": result.kinds,
                       "max_mg_per_kg_min": result.max_mg_per_kg_min, "max_ml_per_h": result.max_ml_per_h,
                       "findings": result.findings, "errors": result.errors}) + b"\n"


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

    def write_encoded(self, data: bytes | memoryview) -> None:
        """Write and flush a chunk's output: bytes, or a view of the workers' shared memory
        (``encoded_batches(..., views=True)``), written as it is, without a copy."""
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
