"""``ivig-safety batch``: check a file of orders, one result row per input row, and a summary at the end.

Exit codes: 0 when every row was checked and written (findings and invalid rows are data, not failure); with
``--fail-on`` the worst row at or above the threshold decides: 1 warn, 3 block, 2 error (a row of invalid input),
on the scale warn < block < error, because an unchecked order may hide anything. 4 when any row was left unchecked
by an internal error (the check, the encoding or a worker process failed; not the input's fault), whatever
``--fail-on`` says: such a run must never pass. 2 also when the input cannot be read at all (nothing is written
then) or ``--output`` cannot be opened; 4 when the output cannot be written, or the run itself fails; 130 when
interrupted (the rows finished so far are written and counted). Messages and the summary go to stderr, results to
stdout or ``--output``.

``--output`` is created owner-only (0600: the rows are patient data) and never opened through a symbolic link
(O_NOFOLLOW): a link planted at the output path is refused, not written through.
"""

from __future__ import annotations

import errno
import gc
import os
import sys
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from ..batch import WRITERS, BatchInputError, Source, Summary, encoded_batches, open_source
from ..formats.render import clean_text
from .options import (EXIT_BLOCK, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, EXIT_WARN, fail, load_checker, policy_option,
                      site_codes_option)

if TYPE_CHECKING:  # rich is imported when a table or a progress bar is drawn: every command loads this module
    from rich.console import Console
    from rich.table import Table

EXIT_INTERRUPTED = 130
#: --fail-on thresholds: a level fails the run on itself and on every level after it.
FAIL_LEVELS = ("warn", "block", "error")
FAIL_EXIT = {"warn": EXIT_WARN, "block": EXIT_BLOCK, "error": EXIT_INVALID}


def exit_code(summary: Summary, fail_on: str | None) -> int:
    """4 if any row was left unchecked by an internal error; else 0 unless ``fail_on`` is set and some row is at or
    above it; then the exit code of the worst such row."""
    if summary.internal:
        return EXIT_INTERNAL
    if fail_on is None:
        return EXIT_OK
    for level in reversed(FAIL_LEVELS[FAIL_LEVELS.index(fail_on):]):
        if summary.verdicts.get(level):
            return FAIL_EXIT[level]
    return EXIT_OK


def summary_table(summary: Summary) -> Table:
    """Rows and verdicts, then per finding kind and per rule the number of rows it appears in."""
    from rich.table import Table
    from rich.text import Text

    counts = summary.as_dict()
    table = Table(title="ivig-safety batch", title_justify="left", show_header=True, header_style="bold")
    for name in ("rows", "ok", "warn", "block", "error"):
        table.add_column(name, justify="right")
    table.add_row(*(str(counts[n]) for n in ("rows", "ok", "warn", "block", "error")))
    detail = Table(show_header=True, header_style="bold", title_justify="left")
    detail.add_column("finding kind / rule")
    detail.add_column("rows", justify="right")
    for kind, count in sorted(summary.kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        detail.add_row(Text(clean_text(f"kind {kind}")), str(count))
    for rule, count in sorted(summary.rules.items(), key=lambda kv: (-kv[1], kv[0])):
        detail.add_row(Text(clean_text(f"rule {rule}")), str(count))
    outer = Table.grid(padding=(1, 0))
    outer.add_row(table)
    if summary.internal:
        outer.add_row(Text(f"{summary.internal} row(s) not checked because of an internal error "
                           f"(see their errors): exit code {EXIT_INTERNAL}", style="bold red"))
    if summary.kinds or summary.rules:
        outer.add_row(detail)
    return outer


def open_output(path: str) -> BinaryIO:
    """Open ``--output`` for writing: created owner-only (0600), truncated if it exists, never through a symbolic
    link (O_NOFOLLOW refuses a link at the path, dangling or not, with ELOOP)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if os.path.islink(path):  # also where O_NOFOLLOW does not exist
        raise OSError(errno.ELOOP, "a symbolic link: not followed")
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, "wb")


class _ProgressReporter:
    """A progress bar on stderr (rows, rows/s, ETA from the bytes or files read), refreshed at most 10 times a
    second so it costs nothing per row."""

    def __init__(self, source: Source, console: Console):
        from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.source = source
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.fields[rows]:>9,} rows"), BarColumn(),
            TextColumn("{task.fields[rate]:>7,.0f} rows/s"), TextColumn("ETA"), TimeRemainingColumn(),
            TimeElapsedColumn(), console=console, transient=True, refresh_per_second=8)
        self.task = self.progress.add_task("batch", total=source.total, rows=0, rate=0.0)
        self.started = self.last = time.monotonic()
        self.rows = 0

    def __enter__(self) -> "_ProgressReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.update(force=True)
        self.progress.stop()

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.update()

    def update(self, force: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.progress.update(self.task, completed=self.source.position, rows=self.rows,
                             rate=self.rows / elapsed, refresh=force)


@click.command()
@click.argument("input_path", metavar="INPUT", type=str)
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Where to write the results (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Output format (default: csv for an --output ending in .csv, else jsonl).")
@click.option("--input-format", type=click.Choice(["auto", "jsonl", "csv"]), default="auto", show_default=True,
              help="Input format; auto uses the suffix, else the first line ('{' means JSON Lines).")
@click.option("--workers", "-j", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes (each loads its own rules).")
@click.option("--fail-on", type=click.Choice(FAIL_LEVELS), default=None,
              help="Exit non-zero if a row is at or above this level (warn < block < error); a row left unchecked "
                   "by an internal error always exits 4.")
@click.option("--quiet", "-q", is_flag=True, help="No summary table on stderr.")
@policy_option
@site_codes_option
def batch(input_path: str, output: str | None, fmt: str | None, input_format: str, workers: int,
          fail_on: str | None, quiet: bool, policy: str | None, site_codes: str | None) -> None:
    """Check every plan in INPUT: a JSON Lines file (one plan per line), a CSV file, a folder of plan files
    (symbolic links in it are not followed), or - for stdin. Writes one result row per input row, in input order;
    --output is created owner-only and never through a symbolic link.

    \b
    Exit codes:
      0    every row was checked and written (findings and invalid rows are data)
      1    --fail-on warn: a row is warn (and none worse)
      3    --fail-on warn|block: a row is block (and none is an error)
      2    --fail-on error (or lower): a row is invalid input; also: the input cannot be read at all,
           or --output cannot be opened
      4    a row was left unchecked by an internal error (whatever --fail-on says); the output cannot
           be written; or the run itself failed
      130  interrupted (the rows finished so far are written and counted)
    """
    load_checker(policy, site_codes)  # a bad policy or site codes file is a usage error (exit 2) before anything is read or written
    # The rules, catalogue and unit registry live as long as this process: keep them out of every GC pass
    # (measured: a few per cent per row with one worker; workers do the same in their initializer).
    gc.freeze()
    try:
        source = open_source(input_path, input_format)
    except BatchInputError as exc:
        fail(str(exc))
    if fmt is None:
        fmt = "csv" if output and output.lower().endswith(".csv") else "jsonl"
    from rich.console import Console

    err_console = Console(stderr=True, highlight=False)
    with source:
        try:
            stream: BinaryIO = sys.stdout.buffer if output in (None, "-") else open_output(output)
        except OSError as exc:
            fail(f"{output}: cannot write: {exc.strerror or exc}")
        # workers start now, before the progress bar's thread exists (they are forked)
        # views: each chunk's output is written before the next is asked for (see encoded_batches)
        batches = encoded_batches(source, fmt, workers=workers, policy=policy, site_codes=site_codes, views=True)
        summary = Summary()
        code: int | None = None
        show_progress = sys.stderr.isatty() and not quiet
        reporter = _ProgressReporter(source, err_console) if show_progress else None
        try:
            writer = WRITERS[fmt](stream)
            with reporter if reporter is not None else nullcontext():
                for data, counts in batches:
                    writer.write_encoded(data)
                    summary.merge(counts)
                    if reporter is not None:
                        reporter.advance(counts.rows)
            writer.close()
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
            click.echo(f"interrupted: the first {summary.rows} rows are written", err=True)
        except BatchInputError as exc:
            code = EXIT_INVALID
            click.echo(f"error: {clean_text(exc)}; {summary.rows} rows written", err=True)
        except BrokenPipeError:
            code = EXIT_INTERNAL
            sys.stderr.write(f"error: output closed after {summary.rows} rows\n")
        except OSError as exc:  # reading errors arrive as BatchInputError: this is the output failing
            code = EXIT_INTERNAL
            click.echo(f"error: cannot write the output: {clean_text(exc.strerror or exc)}; {summary.rows} rows "
                       f"written", err=True)
        except Exception as exc:  # noqa: BLE001 - the run itself failed (a bug): no traceback, and never exit 0
            code = EXIT_INTERNAL
            detail = clean_text(" ".join(str(exc).split()))[:300]
            click.echo(f"error: internal error, the run stopped: {type(exc).__name__}: {detail}; "
                       f"{summary.rows} rows written", err=True)
        finally:
            getattr(batches, "close", lambda: None)()
            if stream is not sys.stdout.buffer:
                stream.close()
            else:
                _quiet_stdout_on_broken_pipe()
    if not quiet:
        err_console.print(summary_table(summary))
    elif summary.internal:
        click.echo(f"error: {summary.internal} row(s) not checked because of an internal error", err=True)
    if code is None or (summary.internal and code != EXIT_INTERRUPTED):
        code = exit_code(summary, fail_on) if code is None else EXIT_INTERNAL
    sys.exit(code)


def _quiet_stdout_on_broken_pipe() -> None:
    """After a closed pipe (``| head``), keep Python from complaining again when it flushes stdout at exit."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
