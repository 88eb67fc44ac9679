"""How batch hands work to worker processes: lines read in blocks and sent as :class:`LineChunk` s, each turned back
into rows by the worker that checks it.

Why these tests: the parent no longer reads a line at a time, so everything the line reader guaranteed (one row per
physical line, its number, CRLF and a last line without a newline, the length cap and its error row, a byte order
mark, memory bounded whatever the input) must hold for the block reader too. The reference is the reader it
replaced (``readline(limit + 1)`` per line), written out here, compared on generated inputs with tiny limits and
blocks so every boundary case comes up; then the whole command, one worker against two, byte for byte.
"""

from __future__ import annotations

import io
import os
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ivig_safety import get_checker
from ivig_safety.batch import MAX_LINE_BYTES, BatchInputError, InputRow, encoded_batches, open_source
from ivig_safety.batch import workers as batch_module
from ivig_safety.batch.sources import LineChunk, _LineReader
from ivig_safety.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BOM = b"\xef\xbb\xbf"
TOO_LONG = f"line longer than {MAX_LINE_BYTES // 1024} KiB: not read"


def reference_rows(data: bytes, limit: int, kind: str = "jsonl", first_line: int = 1) -> list[InputRow]:
    """The rows the line-at-a-time reader made of ``data``: readline(limit + 1); a line that fills it without a
    newline is too long and skipped to its end; ``\\r\\n`` or ``\\n`` removed; in JSON Lines, a byte order mark
    removed from the first line that is not too long."""
    stream = io.BytesIO(data)
    rows: list[InputRow] = []
    line = first_line - 1
    first = True
    while raw := stream.readline(limit + 1):
        line += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (rest := stream.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
            rows.append(InputRow(line, "error", TOO_LONG))
            continue
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if first and kind == "jsonl" and raw.startswith(BOM):
            raw = raw[3:]
        first = False
        rows.append(InputRow(line, kind, raw, None))
    return rows


class Chunked:
    """A stream source over ``data`` with a tiny limit and block, as batch's parent reads it."""

    def __init__(self, data: bytes, limit: int, block: int, kind: str = "jsonl"):
        from ivig_safety.batch.sources import _StreamSource

        self.source = _StreamSource(_LineReader(io.BytesIO(data), limit, block), "jsonl", None, True, "test")
        self.source.format = kind  # a CSV source as after its header (which is not under test here)

    def chunks(self, size: int) -> list[LineChunk]:
        return list(self.source.chunks(size))


def rows_of(chunks: list[LineChunk]) -> list[InputRow]:
    return [row for chunk in chunks for row in chunk.rows()]


LINE_PARTS = [b"a", b"{}", b"\r", b"\n", b"\n", b"\r\n", BOM, b"xxxxxxx", b" "]


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(st.sampled_from(LINE_PARTS), max_size=60), limit=st.integers(1, 40),
       block=st.integers(1, 24), size=st.integers(1, 8), kind=st.sampled_from(["jsonl", "csv"]))
def test_chunks_give_the_rows_the_line_reader_gave(parts: list[bytes], limit: int, block: int, size: int,
                                                   kind: str) -> None:
    data = b"".join(parts)
    chunks = Chunked(data, limit, block, kind).chunks(size)
    expected = reference_rows(data, limit, kind)
    assert rows_of(chunks) == expected
    assert all(1 <= chunk.count <= size for chunk in chunks)
    assert [chunk.line for chunk in chunks] == [1 + sum(c.count for c in chunks[:i]) for i in range(len(chunks))]
    assert rows_of(pickle.loads(pickle.dumps(chunks))) == expected  # as a worker receives them


def test_chunk_edge_cases_line_by_line() -> None:
    """The cases the reader exists for, spelt out: CRLF (one \\r removed, not two), empty lines, a last line
    without a newline keeping its \\r, over-long lines (whole in a block, or spanning blocks) as error rows naming
    their line, a byte order mark on the first line only."""
    data = (BOM + b'{"a": 1}\r\n'  # 1: BOM and CRLF
            b"\n"  # 2: empty
            b"x\r\r\n"  # 3: one \r removed
            + b"y" * 30 + b"\n"  # 4: too long, within a block
            + b"z" * 100 + b"\r\n"  # 5: too long, spanning blocks
            + BOM + b"{}\n"  # 6: a BOM after the first line stays
            b"last\r")  # 7: no newline: the \r stays
    chunks = Chunked(data, 20, 16).chunks(3)
    rows = rows_of(chunks)
    assert [(r.line, r.kind, r.payload) for r in rows] == [
        (1, "jsonl", b'{"a": 1}'), (2, "jsonl", b""), (3, "jsonl", b"x\r"), (4, "error", TOO_LONG),
        (5, "error", TOO_LONG), (6, "jsonl", BOM + b"{}"), (7, "jsonl", b"last\r")]
    assert [c.count for c in chunks] == [3, 3, 1]
    assert rows == reference_rows(data, 20)


def test_a_chunk_ends_after_exactly_its_lines_empty_ones_included() -> None:
    data = b"\n\na\n\n\r\nb\n\n"
    chunks = Chunked(data, 100, 100).chunks(2)
    assert [(c.line, c.count, c.segments) for c in chunks] == [
        (1, 2, [b"\n\n"]), (3, 2, [b"a\n\n"]), (5, 2, [b"\r\nb\n"]), (7, 1, [b"\n"])]
    assert rows_of(chunks) == reference_rows(data, 100)


def test_a_too_long_first_line_leaves_the_byte_order_mark_to_the_next() -> None:
    """As before: the mark is removed from the first line that is read, even when that is the input's last and
    holds nothing else (an empty row, not a vanished one)."""
    data = b"q" * 10 + b"\n" + BOM
    rows = rows_of(Chunked(data, 4, 3).chunks(5))
    assert [(r.line, r.kind, r.payload) for r in rows] == [(1, "error", TOO_LONG), (2, "jsonl", b"")]


def test_a_chunk_that_does_not_hold_its_count_fails_rather_than_renumbers() -> None:
    with pytest.raises(RuntimeError, match="holds 2 lines, not 3"):
        LineChunk(1, 3, "jsonl", None, [b"a\nb\n"]).rows()


class EndlessLine(io.RawIOBase):
    """``size`` bytes of one line, then ``\\nafter\\n``, produced as read: never in memory whole."""

    def __init__(self, size: int):
        self.left = size
        self.tail = b"\nafter\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left > 0:
            n = min(len(buffer), self.left)
            buffer[:n] = b"x" * n
            self.left -= n
            return n
        n = min(len(buffer), len(self.tail))
        buffer[:n] = self.tail[:n]
        self.tail = self.tail[n:]
        return n


def test_a_huge_line_is_skipped_in_bounded_memory() -> None:
    reader = _LineReader(io.BufferedReader(EndlessLine(64 * MAX_LINE_BYTES)))
    tracemalloc.start()
    try:
        segments, count = reader.take(5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (segments, count) == ([None, b"after\n"], 2)
    assert peak < 4 * MAX_LINE_BYTES  # the line is 64 times the cap


class FailingStream(io.RawIOBase):
    """Some lines, then an I/O error (a disk or a network share going away)."""

    def __init__(self, data: bytes):
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.data:
            raise OSError(5, "Input/output error")
        n = min(len(buffer), len(self.data))
        buffer[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def test_lines_read_before_a_failing_read_are_handed_out_then_the_error() -> None:
    reader = _LineReader(io.BufferedReader(FailingStream(b"one\ntwo\nthr"), 4), block=4)
    assert reader.take(10) == ([b"one\ntwo\n"], 2)  # "thr" was cut short: not a line
    for _ in range(2):
        with pytest.raises(BatchInputError, match="Input/output error"):
            reader.take(10)

    # a line too long whose end is never read is not a row either (the line reader raised before yielding it)
    reader = _LineReader(io.BufferedReader(FailingStream(b"ok\n" + b"x" * 20), 4), limit=8, block=4)
    assert reader.take(10) == ([b"ok\n"], 1)
    with pytest.raises(BatchInputError, match="Input/output error"):
        reader.take(10)


# ------------------------------------------------------------------------------------------- the whole command


def run_cli(args: list[str], stdin: bytes | None = None) -> tuple[int, bytes]:
    result = CliRunner().invoke(main, ["batch", *args], input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout_bytes


def awkward_jsonl() -> bytes:
    good = (EXAMPLES / "orders.jsonl").read_bytes().splitlines()
    lines = [BOM + good[0] + b"\r", b"", b"  ", good[1] + b"\r\r", b'{"id": "HUGE", "x": "' + b"x" * MAX_LINE_BYTES
             + b'"}', b"\xff\xfe", good[2]]
    lines += [orjson.dumps({**orjson.loads(good[n % len(good)]), "id": f"R{n}"}) for n in range(600)]
    return b"\n".join(lines + [good[3] + b"\r"])  # no newline after the last line


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_two_workers_write_what_one_writes_on_awkward_input(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "awkward.jsonl"
    source.write_bytes(awkward_jsonl())
    one = run_cli([str(source), "--quiet", "--format", fmt, "--workers", "1"])
    two = run_cli([str(source), "--quiet", "--format", fmt, "--workers", "2"])
    assert one == two
    assert one[1].count(b"\n") == 608 + (fmt == "csv")


def test_two_workers_on_csv_with_crlf_and_stdin(tmp_path: Path) -> None:
    header, *good = (EXAMPLES / "orders.csv").read_bytes().splitlines()
    lines = [header] + [good[n % len(good)] for n in range(500)] + [b"", b'X,"open quote', b"y" * (MAX_LINE_BYTES + 1)]
    data = b"\r\n".join(lines)
    source = tmp_path / "orders.csv"
    source.write_bytes(data)
    one = run_cli([str(source), "--quiet", "--workers", "1"])
    assert one[0] == 0 and one[1].count(b"\n") == len(lines) - 1
    assert run_cli([str(source), "--quiet", "--workers", "2"]) == one
    assert run_cli(["-", "--quiet", "--workers", "2"], stdin=data) == one


def test_a_dead_worker_costs_only_its_row_with_line_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that dies on a row of a JSON Lines file (sent as lines, not rows) costs that row alone; every
    other row is written as one worker writes it."""
    real = batch_module.process_rows
    parent = os.getpid()

    def crashing(rows: list[InputRow], checker: Any) -> Any:
        for row in rows:
            if os.getpid() != parent and isinstance(row.payload, bytes) and b'"CRASH"' in row.payload:
                os._exit(1)
        return real(rows, checker)

    good = (EXAMPLES / "orders.jsonl").read_bytes().splitlines()
    lines = [orjson.dumps({**orjson.loads(good[n % len(good)]), "id": f"R{n}"}) for n in range(60)]
    lines[23] = orjson.dumps({**orjson.loads(lines[23]), "id": "CRASH"})
    source = tmp_path / "crash.jsonl"
    source.write_bytes(b"\r\n".join(lines) + b"\r\n")
    monkeypatch.setattr(batch_module, "process_rows", crashing)  # workers are forked: they inherit the patch
    get_checker()

    with open_source(source) as rows:
        assert isinstance(next(rows.chunks(4)), LineChunk)
    with open_source(source) as rows:
        two = list(encoded_batches(rows, "jsonl", workers=2, chunk_rows=4))
    with open_source(source) as rows:
        one = list(encoded_batches(rows, "jsonl", workers=1, chunk_rows=4))
    out_two = [orjson.loads(line) for data, _ in two for line in data.splitlines()]
    out_one = [orjson.loads(line) for data, _ in one for line in data.splitlines()]
    assert [r["line"] for r in out_two] == list(range(1, 61))
    assert out_two[23]["verdict"] == "error" and "worker process died" in out_two[23]["errors"][0]["msg"]
    assert out_two[:23] + out_two[24:] == out_one[:23] + out_one[24:]
    assert sum(counts.internal for _, counts in two) == 1


# ------------------------------------------------------------------------------ output through shared memory


def numbered_orders(count: int, marker: int | None = None) -> bytes:
    good = (EXAMPLES / "orders.jsonl").read_bytes().splitlines()
    lines = [orjson.dumps({**orjson.loads(good[n % len(good)]), "id": f"R{n}"}) for n in range(count)]
    if marker is not None:
        lines[marker] = orjson.dumps({**orjson.loads(lines[marker]), "id": "MISPLACED"})
    return b"\n".join(lines) + b"\n"


def batches(source: Path, workers: int, chunk_rows: int, views: bool = False) -> list[tuple[Any, Any]]:
    """(output, counts) per chunk; a view is copied as it comes (it is valid only until the next chunk)."""
    out = []
    with open_source(source) as rows:
        for data, counts in encoded_batches(rows, "jsonl", workers=workers, chunk_rows=chunk_rows, views=views):
            out.append((bytes(data), counts, type(data)))
    return out


def output(parts: list[tuple[Any, ...]]) -> bytes:
    return b"".join(part[0] for part in parts)


def test_chunk_output_comes_through_shared_memory_as_views_released_after_use(tmp_path: Path) -> None:
    source = tmp_path / "orders.jsonl"
    source.write_bytes(numbered_orders(90))
    get_checker()
    with open_source(source) as rows:
        chunks = encoded_batches(rows, "jsonl", workers=2, chunk_rows=8, views=True)
        first, _ = next(chunks)
        assert isinstance(first, memoryview) and first.readonly
        held = bytes(first)
        second, _ = next(chunks)
        with pytest.raises(ValueError):  # released: its slot may hold another chunk's output by now
            bytes(first)
        rest = [bytes(second)] + [bytes(data) for data, _ in chunks]
    one = batches(source, 1, 8)
    assert held + b"".join(rest) == output(one)
    assert output(batches(source, 2, 8)) == output(one)  # bytes (copies) without views


def test_output_larger_than_a_slot_comes_through_the_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "orders.jsonl"
    source.write_bytes(numbered_orders(120))
    monkeypatch.setattr(batch_module, "SLOT_BYTES", 24 * 1024)  # workers are forked: they inherit it
    get_checker()
    two = batches(source, 2, 10, views=True)
    room = 24 * 1024 - 24  # the slot less its serials and length
    assert [kind for data, _, kind in two] == [bytes if len(data) > room else memoryview for data, _, _ in two]
    assert {kind for *_, kind in two} == {memoryview, bytes}  # some chunks fit in a slot, some do not
    assert output(two) == output(batches(source, 1, 10))


def test_a_slot_that_does_not_hold_its_chunk_is_never_read_as_its_output(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that puts a chunk's output in the wrong slot (a bug that must not become wrong rows): the chunk
    whose slot it was, and the chunk whose output it is, both fail the serial check, are re-run row by row, and
    every row is written as one worker writes it."""
    real = batch_module._work_encoded

    def misplaced(chunk: Any, fmt: str, ticket: Any = None) -> Any:
        rows = batch_module._rows_of(chunk)
        if ticket is not None and any(b"MISPLACED" in row.payload for row in rows):
            slot, serial = ticket
            ticket = ((slot + 1) % (2 * batch_module.CHUNKS_PER_WORKER), serial)
        return real(chunk, fmt, ticket)

    misplaced.__module__, misplaced.__qualname__ = real.__module__, real.__qualname__  # pickled by name
    source = tmp_path / "orders.jsonl"
    source.write_bytes(numbered_orders(200, marker=57))
    monkeypatch.setattr(batch_module, "_work_encoded", misplaced)
    get_checker()
    two = batches(source, 2, 6)
    one = batches(source, 1, 6)
    assert output(two) == output(one)
    assert sum(counts.internal for _, counts, _ in two) == 0
    assert sum(counts.rows for _, counts, _ in two) == 200
