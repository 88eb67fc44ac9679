"""Check many plans in one run: read JSON Lines, CSV, a folder of plan files or stdin; write one result per row.

Why batch/ (this module, sources.py, rows.py, writers.py) is built the way it is:

* **Every input row yields exactly one output row, in input order.** A corrupt, empty, huge or non-UTF-8 line
  becomes an ``error`` row naming the line and the problem; an unexpected exception while decoding, checking or
  encoding one row (an :class:`EngineError`, a bug, an id orjson cannot write) becomes an ``error`` row too, marked
  ``internal`` (not the row's fault: it was left unchecked), and the run goes on. A pharmacist reconciling a night's
  orders must be able to match every input line with its output line, and "the row that vanished" is the failure
  that hides an unchecked order. The CLI exits 4 when any row was left unchecked.
* **Streaming.** Input is read as bytes, in blocks, every line capped in length (a longer one is skipped, never
  held), and decoded per line; at most a bounded window of rows is in flight. Memory stays flat on a million rows,
  and results are written and flushed as they come, so an interrupted run leaves a valid prefix of the output.
* **One physical line is one row**, in CSV too: a quoted field may not span lines. Otherwise one unbalanced quote
  would swallow the rest of the file into a single record and every following order would go unchecked.
* **Processes, not threads, for ``workers > 1``.** The checker is thread-safe, but threads share one GIL and the
  work is CPU-bound Python; each worker process builds its own :class:`Checker` in an initializer. The parent only
  reads lines and writes results, so the heavy work (decoding, validation, rules, messages) scales with the workers;
  and it does nothing per row that C cannot do, because it shares the cores with them: a chunk goes out as the raw
  lines (sources.LineChunk), and its output comes back through memory shared with the workers (see _Parallel).
  ``concurrent.futures`` is used rather than ``multiprocessing.Pool.imap`` because a worker that dies (a crash in
  the C core) makes ``imap`` wait forever, while the executor reports it. The rows of a chunk that was lost are
  then re-run one at a time, alone in a fresh pool, so the one row that kills a worker is found and becomes an
  ``error`` row ("a worker process died again ..."); every other row of the chunk keeps its verdict.
* **A folder's symlinks are never followed** (an error row names the file; its target is never read or echoed),
  and plan files are opened with O_NOFOLLOW and read only if they are regular files.
* **Output text is terminal-safe**: JSON has control and bidi characters escaped, CSV cells go through
  :func:`render.clean_text`.
* **Duplicate keys are an error** in JSON Lines, as in YAML plans (knowledge/yamlio.py): a row with two ``rate``
  keys would otherwise be judged on one of them without a word.

Nothing clinical happens here: every verdict comes from :meth:`Checker.check`.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import struct
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

from ..check import Checker, collector_paused, get_checker
from .rows import BatchResult, InputRow, _describe, _internal, process_rows
from .sources import LineChunk, Source, row_chunks
from .summary import Summary
from .writers import Writer, _encode_results

if TYPE_CHECKING:  # the process pool is imported when a run uses workers, not by every ``import ivig_safety``
    import mmap
    from concurrent.futures import Future, ProcessPoolExecutor

#: Rows sent to a worker process at a time, and chunks in flight per worker: enough to hide the round trip,
#: small enough that memory stays bounded and output keeps flowing. 256 rather than 64: every chunk costs the
#: parent a future, two pickles and a pipe round trip, and the parent shares the two cores with the workers. 512
#: rather than 256 once the parent no longer did anything per row: the executor's result and feeder threads were
#: then most of its cost, about 3.5 us a row with 256-row chunks and 2.2 with 512 (measured in one run). Three
#: chunks per worker keep about 5 MB of output in flight per worker, as four of 256 did; the last chunk alone takes
#: about 55 ms.
CHUNK_ROWS = 512
CHUNKS_PER_WORKER = 3
#: Output bytes a chunk may hand back through memory shared with the parent (one slot per chunk in flight); a
#: chunk whose output is larger sends it through the pool's pipe instead. 512 rows write about 1.6 MB.
SLOT_BYTES = 4 << 20
#: A slot holds (serial, length), the output, then the serial again: the parent reads a slot only if both serials
#: are the ones it gave the chunk, and the length is the one the worker reported.
_SLOT_HEAD = struct.Struct("<QQ")
_SLOT_TAIL = struct.Struct("<Q")

_WORKER_CHECKER: Checker | None = None
_WORKER_SLOTS: mmap.mmap | None = None


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


def _init_worker(rules_dir: str | None, policy: str | None, site_codes: str | None, parent: int,
                 slots: mmap.mmap | None = None) -> None:
    """Each worker process gets its own rule engine: durable_rules handles and the engine's locks belong to one
    process, and the parent may have been using them when it forked.

    The loaded rules, catalogue and policy are inherited through fork when the parent had loaded them (the CLI
    does), which saves each worker the half second of loading them again. Ctrl-C is left to the parent, which shuts
    the pool down and still prints what it finished.
    """
    global _WORKER_CHECKER, _WORKER_SLOTS
    _WORKER_SLOTS = slots  # the parent's shared memory, inherited through fork (see _Parallel)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    checker = get_checker(rules_dir, policy, site_codes)
    checker.renew_engine()
    _WORKER_CHECKER = checker
    gc.freeze()  # the rules, catalogue and pint registry live as long as the process: keep them out of GC passes


#: What the parent sends a worker: rows, or the lines of a JSON Lines or CSV input as read (see sources.LineChunk),
#: which the worker turns into rows itself.
Chunk = list[InputRow] | LineChunk


def _rows_of(chunk: Chunk) -> list[InputRow]:
    return chunk.rows() if isinstance(chunk, LineChunk) else chunk


def _work(chunk: Chunk) -> list[BatchResult]:
    checker = _WORKER_CHECKER
    assert checker is not None, "worker not initialised"
    return _checked(_rows_of(chunk), checker)


def _checked(chunk: list[InputRow], checker: Checker) -> list[BatchResult]:
    """process_rows over a chunk with the cyclic garbage collector paused, as batch runs it (in a worker, or in
    the one process with one worker).

    Why: checking a row makes no reference cycles (tests/test_batch.py holds a chunk with failed rows to none), so
    the collector's passes during a chunk find nothing; they only walk the chunk's live objects again and again
    (measured: 8 to 10% of a row's CPU). It runs again when the chunk is done, so anything cyclic a chunk did leave
    is still collected, a chunk later; a chunk is bounded in rows and line length, so memory stays bounded."""
    with collector_paused():
        return process_rows(chunk, checker)


def _work_encoded(chunk: Chunk, fmt: str, ticket: tuple[int, int] | None = None) -> tuple[bytes | int, Summary]:
    """Check a chunk and serialise it here, in the worker: the parent then only writes bytes and adds counts.

    With a ``ticket`` (slot, serial) the output goes into that slot of the shared memory, and only its length comes
    back through the pool's pipe (see :class:`_Parallel`); without one, or if it does not fit, the bytes do.

    Why: sending results back as objects made the parent unpickle and re-serialise about 2 KB per row, which kept
    it busy a fifth of the time and held two workers well below twice one. Sending the bytes through the pipe
    still cost the parent about 5 us a row (reading 3 KB a row in 64 KB pieces, copying it twice, unpickling it).
    """
    data, counts = _encode_results(_work(chunk), fmt)
    slots = _WORKER_SLOTS
    if ticket is None or slots is None or len(data) > SLOT_BYTES - _SLOT_HEAD.size - _SLOT_TAIL.size:
        return data, counts
    slot, serial = ticket
    start = slot * SLOT_BYTES + _SLOT_HEAD.size
    _SLOT_HEAD.pack_into(slots, start - _SLOT_HEAD.size, serial, len(data))
    slots[start:start + len(data)] = data
    _SLOT_TAIL.pack_into(slots, start + len(data), serial)
    return len(data), counts


def _ready() -> bool:
    return _WORKER_CHECKER is not None


def _as_rows(plans: Iterable[Any]) -> Iterator[InputRow]:
    if isinstance(plans, Source):  # rows already: no generator layer per row
        return iter(plans)
    return _numbered(plans)


def _as_chunks(plans: Iterable[Any], size: int) -> Iterator[Chunk]:
    """Chunks of at most ``size`` rows, in order; a source's own (a JSON Lines or CSV input gives its lines as
    read: the parent then does nothing per line but find it)."""
    if isinstance(plans, Source):
        return plans.chunks(max(1, size))
    return row_chunks(_numbered(plans), size)


def _numbered(plans: Iterable[Any]) -> Iterator[InputRow]:
    for number, item in enumerate(plans, 1):
        yield item if isinstance(item, InputRow) else InputRow(number, "plan", item)


def check_many(plans: Iterable[Any], *, workers: int = 1, policy: str | os.PathLike[str] | None = None,
               rules_dir: str | os.PathLike[str] | None = None, chunk_rows: int = CHUNK_ROWS,
               site_codes: str | os.PathLike[str] | None = None) -> Iterator[BatchResult]:
    """Check an iterable of plans (dicts, or :class:`InputRow` s from :func:`open_source`); yield one
    :class:`BatchResult` per item, in input order, whatever the item contains.

    The rules and policy are loaded now, so a bad policy file raises :class:`RuleFileError` here rather than at the
    first result. With ``workers > 1`` the worker processes are started now too (before the caller starts threads
    such as a progress bar), and stopped when the iterator is exhausted or closed.
    """
    rules, pol, site = _paths(rules_dir, policy, site_codes)
    checker = get_checker(rules, pol, site)
    if workers <= 1:
        rows = _as_rows(plans)
        return (process_rows([row], checker)[0] for row in rows)  # one at a time: the caller may be waiting
    return _Parallel(_as_chunks(plans, chunk_rows), workers, (rules, pol, site), chunk_rows).results()


def _paths(*paths: str | os.PathLike[str] | None) -> tuple[str | None, ...]:
    """The rules folder, policy file and site codes file as text (what worker processes are started with)."""
    return tuple(str(path) if path is not None else None for path in paths)


def _succeeded(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class _Parallel:
    """Ordered, bounded fan-out over worker processes; a dead worker costs only the row that killed it.

    With ``fmt`` set, each chunk comes back as ``(output bytes, counts)`` (see :func:`_work_encoded`); without
    it, as :class:`BatchResult` s.

    Why rows are re-run, not voided: when a worker dies, the executor fails every chunk in flight, and nothing says
    which row was at fault. The chunk at the head of the queue is then re-run one row at a time, each row alone in a
    fresh pool (nothing else in flight, so a death is that row's): a row that kills a worker again becomes an
    internal error row saying so, every other row gets its verdict. The other chunks that were in flight are
    submitted again (each is isolated the same way if it fails again when its turn comes). Any other failure of a
    chunk (a result that cannot be sent back) is isolated the same way.
    """

    def __init__(self, chunks: Iterator[Chunk], workers: int, files: tuple[str | None, ...], chunk_rows: int,
                 fmt: str | None = None):
        self.source, self.workers, self.files, self.fmt = chunks, workers, files, fmt
        self.chunk_rows = max(1, chunk_rows)
        self.window = workers * CHUNKS_PER_WORKER
        self.pending: deque[_Flight] = deque()
        self.serials = itertools.count(1)
        self.free = list(range(self.window))  # slots of the shared memory not held by a chunk in flight
        self.slots = self._shared_memory()
        try:
            self.pool = self._start()
        except BaseException:
            self._release()
            raise

    def _shared_memory(self) -> mmap.mmap | None:
        """Where workers put a chunk's output (``fmt`` set): an anonymous shared mapping, one slot per chunk in
        flight, inherited by the forked workers. None without fork (or without the memory): the output then comes
        through the pool's pipe, as every chunk's did before.

        Why: a chunk's output (about 800 KB) sent back through the pipe cost the parent's result thread about 5 us a
        row: read in 64 KB pieces, copied twice, unpickled. From the slot it is copied once. The parent gives each
        submission a slot no other chunk in flight holds and a serial never given before, and checks both serials
        and the length before it reads: a slot that is not the chunk's own is never read as its output (the chunk
        is then re-run row by row, as a failed chunk is)."""
        import mmap
        import multiprocessing

        if self.fmt is None or "fork" not in multiprocessing.get_all_start_methods():
            return None
        try:
            return mmap.mmap(-1, self.window * SLOT_BYTES)
        except (OSError, ValueError):
            return None

    def _start(self) -> ProcessPoolExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        # fork: workers start in milliseconds instead of re-importing pint and pydantic (about a second each)
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        for stream in (sys.stdout, sys.stderr):  # a forked child flushes inherited buffers at exit: empty them
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                   initargs=(*self.files, os.getpid(), self.slots))
        try:  # start every worker now and surface an initializer failure here, not as error rows later
            for ready in [pool.submit(_ready) for _ in range(self.workers)]:
                ready.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return pool

    def chunks(self, views: bool = False) -> Iterator[Any]:
        """One item per chunk, in input order: a list of results, or (bytes, counts) when ``fmt`` is set.

        With ``views``, the bytes of a chunk whose output is in shared memory are a read-only memoryview of its slot,
        valid until the next item is asked for (the slot is then released, and may take another chunk's output):
        the parent writes them without a copy of its own."""
        from concurrent.futures.process import BrokenProcessPool

        chunks = self.source
        exhausted = False
        memory = memoryview(self.slots).toreadonly() if views and self.slots is not None else None
        try:
            while True:
                while not exhausted and len(self.pending) < self.window:
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    self._submit(chunk)
                if not self.pending:
                    return
                flight = self.pending.popleft()
                try:
                    done = self._outcome(flight, memory)
                except BrokenProcessPool as exc:
                    done = self._isolate(flight.chunk, f"a worker process died ({exc})")
                except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                    done = self._isolate(flight.chunk, _describe(exc))
                try:
                    yield done
                finally:  # written (or abandoned): the slot may take the next chunk's output
                    if isinstance(done[0], memoryview):
                        done[0].release()
                    self.free.append(flight.slot)
        finally:
            self._stop()
            if memory is not None:
                memory.release()
            self._release()

    def _outcome(self, flight: _Flight, memory: memoryview | None) -> Any:
        """The chunk's results, its output read from its slot if it was put there (a view of it, with ``memory``:
        see :meth:`chunks`)."""
        done = flight.future.result()
        if self.fmt is None or not isinstance(done[0], int):
            return done
        length, counts = done
        slots = self.slots
        start = flight.slot * SLOT_BYTES
        if slots is None or _SLOT_HEAD.unpack_from(slots, start) != (flight.serial, length) \
                or _SLOT_TAIL.unpack_from(slots, start + _SLOT_HEAD.size + length) != (flight.serial,):
            raise RuntimeError("the shared memory slot of a chunk did not hold that chunk's output")
        start += _SLOT_HEAD.size
        if memory is not None:
            return memory[start:start + length], counts
        return slots[start:start + length], counts

    def results(self) -> Iterator[BatchResult]:
        for chunk in self.chunks():
            yield from chunk

    def _stop(self) -> None:
        # wait=True: Python 3.11's exit hook fails on a pool shut down without waiting (a closed wakeup pipe).
        # The wait is short: queued chunks are cancelled and at most one chunk per worker is finishing.
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _release(self) -> None:
        if self.slots is not None:
            try:
                self.slots.close()
            except BufferError:  # a view of it is still held by someone: the memory goes when that does
                pass
            self.slots = None

    def _call(self, chunk: Chunk, slot: int | None = None) -> _Flight:
        """Submit a chunk; with a slot, its output is to come back through that slot under a new serial."""
        if self.fmt is None:
            return _Flight(self.pool.submit(_work, chunk), chunk, slot, 0)
        serial = next(self.serials)
        ticket = (slot, serial) if slot is not None and self.slots is not None else None
        return _Flight(self.pool.submit(_work_encoded, chunk, self.fmt, ticket), chunk, slot, serial)

    def _resubmitted(self) -> deque[_Flight]:
        """The chunks in flight, those that did not finish submitted again (each keeps its slot, under a new serial:
        the pool they were in is stopped, so nothing writes to that slot any more)."""
        return deque(flight if _succeeded(flight.future) else self._call(flight.chunk, flight.slot)
                     for flight in self.pending)

    def _restart(self) -> None:
        """A fresh pool; the chunks in flight that did not finish are submitted to it again, in order."""
        self._stop()
        self.pool = self._start()
        self.pending = self._resubmitted()

    def _submit(self, chunk: Chunk) -> None:
        from concurrent.futures.process import BrokenProcessPool

        slot = self.free.pop()  # there is one: at most ``window`` chunks are in flight
        try:
            flight = self._call(chunk, slot)
        except BrokenProcessPool:  # a worker died since the last result: start again, then submit
            self._restart()
            flight = self._call(chunk, slot)
        self.pending.append(flight)

    def _isolate(self, chunk: Chunk, why: str) -> Any:
        """Re-run each row of a lost chunk alone, once, with nothing else in flight; then resume the rest."""
        self._stop()  # running chunks finish (their results are kept), queued ones are cancelled
        self.pool = self._start()
        outcomes = [self._alone(row, why) for row in _rows_of(chunk)]
        self.pending = self._resubmitted()
        if self.fmt is None:
            return [result for outcome in outcomes for result in outcome]
        counts = Summary()
        for _, part in outcomes:
            counts.merge(part)
        return b"".join(data for data, _ in outcomes), counts

    def _alone(self, row: InputRow, first: str) -> Any:
        """One row, in a pool with nothing else in flight (its output through the pipe, not a slot)."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._call([row]).future.result()
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


class _Flight(NamedTuple):
    """A chunk in flight: its future, the chunk (to re-run it), its slot of the shared memory and its serial."""

    future: Future[Any]
    chunk: Chunk
    slot: int | None
    serial: int


def encoded_batches(plans: Iterable[Any], fmt: str, *, workers: int = 1,
                    policy: str | os.PathLike[str] | None = None, rules_dir: str | os.PathLike[str] | None = None,
                    chunk_rows: int = CHUNK_ROWS, site_codes: str | os.PathLike[str] | None = None,
                    views: bool = False) -> Iterator[tuple[bytes, Summary]]:
    """:func:`check_many` for writers: yields ``(output bytes, counts)`` a chunk at a time (serialised and counted
    in the workers with several), in input order; with one worker, a row at a time unless ``plans`` is a steady
    :class:`Source` (a file or a folder). Eager like check_many.

    With ``views`` (for a caller that writes each chunk before it asks for the next: the CLI, :func:`run_batch`),
    the output bytes may be a read-only memoryview of the workers' shared memory, valid only until the next chunk
    is asked for: the parent writes them without copying them first."""
    rules, pol, site = _paths(rules_dir, policy, site_codes)
    if workers <= 1:
        if getattr(plans, "steady", False):
            return _encoded_chunks(plans, get_checker(rules, pol, site), fmt, chunk_rows)
        results = check_many(plans, policy=pol, rules_dir=rules, site_codes=site)
        return (_encode_results((r,), fmt) for r in results)
    get_checker(rules, pol, site)  # a bad rule, policy or site file raises here, before any worker starts
    return _Parallel(_as_chunks(plans, chunk_rows), workers, (rules, pol, site), chunk_rows, fmt).chunks(views)


def _encoded_chunks(plans: Iterable[Any], checker: Checker, fmt: str, size: int) -> Iterator[tuple[bytes, Summary]]:
    """One worker over a steady source: rows checked (process_rows), serialised and counted a chunk at a time, as
    the workers do. If the input fails mid-chunk, the rows read so far are checked and yielded before the error,
    as they would have been one by one (the chunks end with them: :func:`sources.row_chunks`, LineReader.take)."""
    for chunk in _as_chunks(plans, size):
        yield _encode_results(_checked(_rows_of(chunk), checker), fmt)


def run_batch(source: Iterable[Any], writer: Writer, *, workers: int = 1, policy: str | None = None,
              on_rows: Callable[[int], None] | None = None, site_codes: str | None = None) -> Summary:
    """Check every row of ``source``, write the results as they come, and return the counts."""
    summary = Summary()
    for data, counts in encoded_batches(source, writer.format, workers=workers, policy=policy,
                                        site_codes=site_codes, views=True):  # each chunk written before the next
        writer.write_encoded(data)
        summary.merge(counts)
        if on_rows is not None:
            on_rows(counts.rows)
    return summary
