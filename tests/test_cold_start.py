"""What ``ivig-safety check`` does not do at start-up (the cold start issue): modules it does not import, work it
does not repeat, and that what it leaves out changes nothing a user sees. No timings here: each test checks a
behaviour (what was imported, what was built, what was printed), in a fresh interpreter where it is about imports.
"""

from __future__ import annotations

import gc
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.text import Text

from ivig_safety import check
from ivig_safety.cli import main
from ivig_safety.formats.render import render_text
from ivig_safety.knowledge.yamlio import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dermatomyositis.yaml"


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code`` (from the repository, as the tests'
    own imports are)."""
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


_RUN_CHECK = ("from ivig_safety.cli import main\n"
              "try:\n"
              "    main(['check', {path!r}{extra}])\n"
              "except SystemExit as exc:\n"
              "    assert exc.code == 1, exc.code\n")


def test_rich_is_imported_only_to_draw_a_text_report() -> None:
    """rich (about 20 ms to import) is for the text report alone: the package, the command line's imports, the
    batch library and the JSON report never import it."""
    plan = parse_yaml(EXAMPLE.read_text(encoding="utf-8"))
    assert not {m for m in _modules_after("import ivig_safety") if m.split(".")[0] == "rich"}
    assert not {m for m in _modules_after("from ivig_safety.cli import main") if m.split(".")[0] == "rich"}
    batch = f"from ivig_safety import check_many\nassert len(list(check_many([{plan!r}] * 3))) == 3\n"
    assert not {m for m in _modules_after(batch) if m.split(".")[0] == "rich"}
    as_json = _modules_after(_RUN_CHECK.format(path=str(EXAMPLE), extra=", '--format', 'json'"))
    assert "ivig_safety.cli.check" in as_json
    assert not {m for m in as_json if m.split(".")[0] == "rich"}


def test_the_text_report_does_not_load_richs_emoji_table() -> None:
    """The schedule table's title and headers are given as Text: a str would go through rich's emoji replacement,
    which imports its 140 kB table of emoji names for a report that has none."""
    modules = _modules_after(_RUN_CHECK.format(path=str(EXAMPLE), extra=""))
    assert "rich.table" in modules  # the text report was drawn
    assert "rich._emoji_codes" not in modules


def _colour(renderable: object, width: int) -> str:
    console = Console(force_terminal=True, color_system="truecolor", width=width, highlight=False, soft_wrap=False)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def test_the_schedule_title_and_headers_print_as_they_did_as_str() -> None:
    """On a terminal that shows styles, the Text title and headers print byte for byte as the same words given as
    str did (title in table.title, italic; headers in table.header, bold), at any width."""
    from rich.table import Table

    report = check(parse_yaml(EXAMPLE.read_text(encoding="utf-8")))
    as_str = render_text(report)
    table = next(part for part in as_str.renderables if isinstance(part, Table))
    assert isinstance(table.title, Text)
    table.title = table.title.plain
    for column in table.columns:
        assert isinstance(column.header, Text)
        column.header = column.header.plain
    for width in (40, 80, 120):
        printed = _colour(render_text(report), width)
        assert "\x1b[3mSuggested schedule" in printed and "\x1b[1mstep" in printed
        assert printed == _colour(as_str, width)


def test_a_text_report_is_unchanged_by_the_text_headers() -> None:
    """The plain text report (what a pipe gets) has the title and every header where it always had them."""
    result = CliRunner().invoke(main, ["check", str(EXAMPLE)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("Suggested schedule (one infusion day)"))
    header = lines[title + 2]
    for column in ("step", "mg/kg/min", "mL/kg/min", "mL/h (pump)", "duration", "volume mL"):
        assert column in header


def _recording_gc_state(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector runs while ``check`` loads its Checker, recorded each time it does."""
    module = importlib.import_module("ivig_safety.cli.check")
    seen: list[bool] = []
    load = module.load_checker

    def recording(*args: object) -> object:
        seen.append(gc.isenabled())
        return load(*args)

    monkeypatch.setattr(module, "load_checker", recording)
    return seen


def test_check_pauses_the_collector_and_switches_it_on_again(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _recording_gc_state(monkeypatch)
    assert gc.isenabled()
    result = CliRunner().invoke(main, ["check", str(EXAMPLE)])
    assert result.exit_code == 1, result.output
    assert seen == [False] and gc.isenabled()


def test_the_collector_is_on_again_after_a_refused_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = _recording_gc_state(monkeypatch)
    plan = tmp_path / "plan.yaml"
    plan.write_text("product: privigen\n")
    result = CliRunner().invoke(main, ["check", str(plan)])
    assert result.exit_code == 2 and "not checked" in result.output
    assert seen == [False] and gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _recording_gc_state(monkeypatch)
    gc.disable()
    try:
        result = CliRunner().invoke(main, ["check", str(EXAMPLE), "--format", "json"])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert result.exit_code == 1 and seen == [False]


def test_a_bad_site_codes_file_is_refused_at_load_even_for_a_plan_that_needs_no_codes(tmp_path: Path) -> None:
    """The FHIR code index is built with the Checker, so a site codes file whose code clashes, or that names an
    unknown product, is a usage error (exit 2, no report) even when the plan is YAML and never looks a code up:
    the file is found wrong when it is given, not on the first FHIR order."""
    site = tmp_path / "site.yaml"
    site.write_text("name: General Hospital\nproducts:\n  no-such-product:\n"
                    "    - {system: 'urn:oid:1.2.3', values: [X], citation: pharmacy formulary}\n")
    result = CliRunner().invoke(main, ["check", str(EXAMPLE), "--site-codes", str(site)])
    assert result.exit_code == 2 and "no-such-product" in result.output and "WARN" not in result.output


_FREEZE_COUNT_AT_EXIT = ("import atexit, gc, sys\n"
                         "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count()))  # runs last\n"
                         "from ivig_safety.cli import main\n"
                         "try:\n"
                         "    main({args!r})\n"
                         "except SystemExit as exc:\n"
                         "    print('exit', exc.code)\n")


def _frozen_at_exit(args: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", _FREEZE_COUNT_AT_EXIT.format(args=args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("frozen at exit: "), done.stdout
    return int(lines[-1].split(": ")[1]), done.stdout


def test_a_process_that_ran_check_freezes_its_heap_at_exit() -> None:
    """gc.freeze() runs at exit (atexit handlers run last registered first: the one registered before the command
    sees its effect), the report having been written in full first; the verdict's exit code is kept."""
    frozen, stdout = _frozen_at_exit(["check", str(EXAMPLE)])
    assert frozen > 10_000
    assert "Suggested schedule (one infusion day)" in stdout and "Rule set " in stdout and "exit 1" in stdout


def test_a_refused_plan_also_exits_frozen_with_its_exit_code(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("product: privigen\n")
    frozen, stdout = _frozen_at_exit(["check", str(plan)])
    assert frozen > 10_000 and "exit 2" in stdout


def test_other_commands_leave_the_exit_alone() -> None:
    frozen, stdout = _frozen_at_exit(["risk-factors"])
    assert frozen == 0 and "exit 0" in stdout


def test_the_exit_freeze_is_registered_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("ivig_safety.cli.check")
    registered: list[object] = []
    monkeypatch.setattr(module, "_FREEZE_AT_EXIT_REGISTERED", [])
    monkeypatch.setattr(module.atexit, "register", registered.append)
    for _ in range(3):
        assert CliRunner().invoke(main, ["check", str(EXAMPLE), "--format", "json"]).exit_code == 1
    assert registered == [gc.freeze]
