"""Check many plans in one run: read JSON Lines, CSV, a folder of plan files or stdin; write one result per row.

Why batch/ (this module, sources.py, rows.py, writers.py) is built the way it is:

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
* **Duplicate keys are an error** in JSON Lines, as in YAML plans (knowledge/yamlio.py): a row with two ``rate``
  keys would otherwise be judged on one of them without a word.

Nothing clinical happens here: every verdict comes from :meth:`Checker.check`.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..check import Checker, get_checker
from .rows import BatchResult, InputRow, _describe, _internal, process_rows
from .sources import LineChunk, Source, row_chunks
from .summary import Summary
from .writers import Writer, _encode_results

if TYPE_CHECKING:  # the process pool is imported when a run uses workers, not by every ``import ivig_safety``
    from concurrent.futures import Future, ProcessPoolExecutor

#: Rows sent to a worker process at a time, and chunks in flight per worker: enough to hide the round trip,
#: small enough that memory stays bounded and output keeps flowing. 256 rather than 64: every chunk costs the
#: parent a future, two pickles and a pipe round trip, and the parent shares the two cores with the workers.
CHUNK_ROWS = 256
CHUNKS_PER_WORKER = 4

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


def _init_worker(rules_dir: str | None, policy: str | None, site_codes: str | None, parent: int) -> None:
    """Each worker process gets its own rule engine: durable_rules handles and the engine's locks belong to one
    process, and the parent may have been using them when it forked.

    The loaded rules, catalogue and policy are inherited through fork when the parent had loaded them (the CLI
    does), which saves each worker the half second of loading them again. Ctrl-C is left to the parent, which shuts
    the pool down and still prints what it finished.
    """
    global _WORKER_CHECKER
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
    if not gc.isenabled():  # paused already (a nested call) or switched off by whoever runs this process
        return process_rows(chunk, checker)
    gc.disable()
    try:
        return process_rows(chunk, checker)
    finally:
        gc.enable()


def _work_encoded(chunk: Chunk, fmt: str) -> tuple[bytes, Summary]:
    """Check a chunk and serialise it here, in the worker: the parent then only writes bytes and adds counts.

    Why: sending results back as objects made the parent unpickle and re-serialise about 2 KB per row, which kept
    it busy a fifth of the time and held two workers well below twice one.
    """
    return _encode_results(_work(chunk), fmt)


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
        self.pending: deque[tuple[Future[Any], Chunk]] = deque()
        self.pool = self._start()

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
                                   initargs=(*self.files, os.getpid()))
        try:  # start every worker now and surface an initializer failure here, not as error rows later
            for ready in [pool.submit(_ready) for _ in range(self.workers)]:
                ready.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return pool

    def chunks(self) -> Iterator[Any]:
        """One item per chunk, in input order: a list of results, or (bytes, counts) when ``fmt`` is set."""
        from concurrent.futures.process import BrokenProcessPool

        chunks = self.source
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

    def _call(self, chunk: Chunk) -> Future[Any]:
        if self.fmt is None:
            return self.pool.submit(_work, chunk)
        return self.pool.submit(_work_encoded, chunk, self.fmt)

    def _restart(self) -> None:
        """A fresh pool; the chunks in flight that did not finish are submitted to it again, in order."""
        self._stop()
        self.pool = self._start()
        self.pending = deque((future if _succeeded(future) else self._call(chunk), chunk)
                             for future, chunk in self.pending)

    def _submit(self, chunk: Chunk) -> Future[Any]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._call(chunk)
        except BrokenProcessPool:  # a worker died since the last result: start again, then submit
            self._restart()
            return self._call(chunk)

    def _isolate(self, chunk: Chunk, why: str) -> Any:
        """Re-run each row of a lost chunk alone, once, with nothing else in flight; then resume the rest."""
        self._stop()  # running chunks finish (their results are kept), queued ones are cancelled
        self.pool = self._start()
        outcomes = [self._alone(row, why) for row in _rows_of(chunk)]
        self.pending = deque((future if _succeeded(future) else self._call(c), c) for future, c in self.pending)
        if self.fmt is None:
            return [result for outcome in outcomes for result in outcome]
        counts = Summary()
        for _, part in outcomes:
            counts.merge(part)
        return b"".join(data for data, _ in outcomes), counts

    def _alone(self, row: InputRow, first: str) -> Any:
        from concurrent.futures.process import BrokenProcessPool

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


def encoded_batches(plans: Iterable[Any], fmt: str, *, workers: int = 1,
                    policy: str | os.PathLike[str] | None = None, rules_dir: str | os.PathLike[str] | None = None,
                    chunk_rows: int = CHUNK_ROWS, site_codes: str | os.PathLike[str] | None = None
                    ) -> Iterator[tuple[bytes, Summary]]:
    """:func:`check_many` for writers: yields ``(output bytes, counts)`` a chunk at a time (serialised and counted
    in the workers with several), in input order; with one worker, a row at a time unless ``plans`` is a steady
    :class:`Source` (a file or a folder). Eager like check_many."""
    rules, pol, site = _paths(rules_dir, policy, site_codes)
    if workers <= 1:
        if getattr(plans, "steady", False):
            return _encoded_chunks(plans, get_checker(rules, pol, site), fmt, chunk_rows)
        results = check_many(plans, policy=pol, rules_dir=rules, site_codes=site)
        return (_encode_results((r,), fmt) for r in results)
    get_checker(rules, pol, site)  # a bad rule, policy or site file raises here, before any worker starts
    return _Parallel(_as_chunks(plans, chunk_rows), workers, (rules, pol, site), chunk_rows, fmt).chunks()


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
                                        site_codes=site_codes):
        writer.write_encoded(data)
        summary.merge(counts)
        if on_rows is not None:
            on_rows(counts.rows)
    return summary
