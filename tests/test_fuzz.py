"""Adversarial fuzzing of the command line, ``check()`` and the batch runner (issue 8, "Hardening").

Why: the defects of issue 8 were all found by throwing input nobody would write at the program (a 21-digit id, a
ronna-prefixed dose, a comment inside a rate, an escape sequence in an id). These generators keep doing that on
every test run, bounded (a few hundred examples in all, well under a minute); ``benchmarks/fuzz.py`` runs the same
properties with a large budget and prints every failure with its shrunk input.

The properties, for any input at all:

* ``ivig-safety check``: the exit code is 0, 1, 2 or 3 (4 is an internal error: a bug to fix, reported as a
  failure here), never a traceback; exit 2 comes with an ``error:`` line naming something and an empty stdout; a
  verdict comes with a report whose verdict matches the exit code; nothing on stdout or stderr carries a control or
  bidi character.
* ``ivig_safety.check``: returns a Report or raises InvalidPlanError (with at least one field error), nothing else.
* ``check_many`` / the batch encoders: one row out per row in, in order, every row encodable and decodable, and no
  row left unchecked by an internal error.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ivig_safety import InvalidPlanError, Report, check
from ivig_safety.batch import InputRow, check_many
from ivig_safety.batch.writers import _encode_results
from ivig_safety.cli import main

from .conftest import BASE_PLAN
from .strategies import canonical_plans, strip

# ----------------------------------------------------------------------------------------------- generators

#: Characters an adversary reaches for: NUL and other C0, ESC, DEL, C1 (NEL, CSI), bidi controls, zero-width and
#: no-break spaces, non-ASCII digits (Arabic-Indic, extended, fullwidth), fullwidth letters, the comment sign and
#: separators pint or YAML treat specially, micro signs, a lone surrogate, an emoji.
ODD_CHARS = list("\x00\x01\x07\x08\t\n\r\x0b\x0c\x1b\x7f\x85\x9b\u061c\u200b\u200e\u200f\u2028\u2029"
                 "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u00a0\ufeff"
                 "\u0660\u0667\u06f0\u06f7\uff10\uff17\uff4b\u00b5\u03bc\u00b2\u2044\u2215"
                 "#;_-,.:|&\\\"'`$%*^()[]{}<>!?@=+~/ ") + ["\ud800", "\U0001f600", "中", "\u0301"]
odd_text = st.text(alphabet=st.sampled_from(ODD_CHARS) | st.characters(), max_size=24)

HUGE_INTS = st.sampled_from([2 ** 63 - 1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 20, -(10 ** 21), 10 ** 400,
                             10 ** 12, 10 ** 13]) | st.integers()
ODD_FLOATS = st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.0, 1e-300, 1e12, 1e13, -1e12, 1.7976931348623157e308,
                              math.inf, -math.inf, math.nan]) | st.floats(allow_nan=True, allow_infinity=True)

NUMBER_TEXT = st.one_of(
    ODD_FLOATS.map(repr), HUGE_INTS.map(str), st.floats(0.001, 1000).map(lambda x: f"{x:g}"),
    st.sampled_from(["1e308", "1e309", "1e-320", "-0", ".5", "5.", "1e999", "\u0667\u0660", "\uff17\uff10",
                     "7\u0660", "nan", "inf", "-inf", "0x10", "1_000", "1,5", "+-1", "--1", "1e", "e5", "", " ",
                     "0" * 200, "9" * 400, "1" + "0" * 20]))
UNIT_TEXT = st.one_of(
    st.sampled_from(["kg", "g", "lb", "mg", "mg/kg/min", "mL/kg/min", "mL/kg/h", "mL/h", "mL/min", "mg/min", "g/kg",
                     "g", "min", "h", "s", "day", "cm", "m", "in", "%", "years", "months", "Rg", "Qg", "Rg/kg",
                     "Qg/kg", "yg/kg", "QmL/h", "ymL/kg/min", "Qg/yg", "kg^99", "kg^-1", "kg**-1", "kg**999",
                     "mg/(kg*min)", "mL/kg/min # =0.4 per pharmacy", "kg\x00", "k\u202eg", "furlong/fortnight",
                     "", "1", "degC", "delta_degC", "mol", "parsec", "(((kg)))", "m^3", "µg", "μg", "µL/kg/min",
                     "mL/kg/min/min", "mg/kg", "mL", "L/h", "dL/kg/h", "kg" * 30, "/", "*", "^", "()", "kg/",
                     "mg/kg/min\x1b[2J", "g/kg\u2066"]),
    odd_text)
QUANTITY_TEXT = st.builds(lambda n, sep, u, tail: f"{n}{sep}{u}{tail}", NUMBER_TEXT,
                          st.sampled_from(["", " ", "  ", "\t", "\u00a0"]), UNIT_TEXT,
                          st.sampled_from(["", "", "", " ", " #c", "\x1b[8m", "\u202e", "\n", "\x00"]) | odd_text)
#: Well-formed quantities with extreme numbers: these get past parsing and test the arithmetic behind it.
EXTREME_NUMBERS = st.sampled_from([5e-324, 1e-300, 1e-12, 1e-9, 1e-6, 0.001, 0.25, 0.2499, 650, 650.01, 1440,
                                   1440.01, 1e6, 1e9, 1e11, 1e12, 123456789.123, 0.1 + 0.2]) | st.floats(
    1e-320, 1e12, allow_subnormal=True)
RATE_UNITS = ["mg/kg/min", "mL/kg/min", "mL/kg/h", "mL/h", "mL/min", "mg/min", "g/kg/h", "ymL/kg/min", "TmL/h"]


def _well_formed(*units: str) -> st.SearchStrategy[str]:
    return st.builds(lambda n, u: f"{n!r} {u}", EXTREME_NUMBERS, st.sampled_from(units))


WELL_FORMED = {
    "rate": _well_formed(*RATE_UNITS),
    "duration": _well_formed("min", "h", "s", "ys", "day"),
    "mass": _well_formed("kg", "g", "lb", "mg", "Tg", "yg"),
    "length": _well_formed("cm", "m", "in", "km", "ym"),
    "dose": _well_formed("g/kg", "mg/kg", "g", "kg", "Tg/kg"),
}
QUANTITY = st.one_of(
    QUANTITY_TEXT,
    st.fixed_dictionaries({"value": HUGE_INTS | ODD_FLOATS | st.none() | odd_text, "unit": UNIT_TEXT}),
    st.fixed_dictionaries({"value": ODD_FLOATS}, optional={"unit": UNIT_TEXT, "extra": st.integers()}),
    ODD_FLOATS, HUGE_INTS)


def _nest(depth: int, leaf: Any) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


SCALARS = st.none() | st.booleans() | HUGE_INTS | ODD_FLOATS | odd_text
ANY_VALUE = st.one_of(
    SCALARS, QUANTITY,
    st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                 | st.dictionaries(odd_text, children, max_size=4), max_leaves=12),
    st.builds(_nest, st.integers(1, 3000), SCALARS))
IDS = st.one_of(HUGE_INTS, odd_text, st.sampled_from(["\x1b[2K\rOK  \x1b[8m", "\u202eKCOLB", "\x9b31mOK", ""]),
                ANY_VALUE)

#: Where a plan can be hit, and what with.
FIELDS: dict[str, Any] = {
    "id": IDS, "product": odd_text | st.sampled_from(["octagam-10", "Octagam 10%", "privigen", ""]) | ANY_VALUE,
    "indication": odd_text | st.sampled_from(["dermatomyositis", "chronic-itp", "cidp"]) | ANY_VALUE,
    "patient.weight": WELL_FORMED["mass"] | QUANTITY, "patient.height": WELL_FORMED["length"] | QUANTITY,
    "patient.age": st.sampled_from([0, 1e-300, 130, 130.0001, 5e-324]) | QUANTITY | ANY_VALUE,
    "patient.risk_factors": st.lists(odd_text | st.sampled_from(["immobility", "diabetes", "sepsis"]), max_size=4)
    | ANY_VALUE,
    "patient.sex": odd_text | st.sampled_from(["female", "male"]), "patient.pregnant": ANY_VALUE,
    "patient.blood_group": odd_text | st.sampled_from(["A+", "O-", "AB"]),
    "dose.per_course": WELL_FORMED["dose"] | QUANTITY, "dose.per_day": WELL_FORMED["dose"] | QUANTITY,
    "dose.days": st.integers(0, 32) | HUGE_INTS | ANY_VALUE,
    "steps.0.rate": WELL_FORMED["rate"] | QUANTITY, "steps.0.duration": WELL_FORMED["duration"] | QUANTITY,
    "steps.1.rate": WELL_FORMED["rate"] | QUANTITY, "steps.1.duration": WELL_FORMED["duration"] | QUANTITY,
    "steps.-1.rate": WELL_FORMED["rate"] | QUANTITY,
    "steps": ANY_VALUE | st.lists(st.fixed_dictionaries(
        {"rate": WELL_FORMED["rate"] | QUANTITY}, optional={"duration": WELL_FORMED["duration"] | QUANTITY}),
        max_size=60) | st.lists(st.fixed_dictionaries({"rate": WELL_FORMED["rate"],
                                                       "duration": WELL_FORMED["duration"]}), min_size=1,
                                max_size=50).map(lambda steps: steps[:-1] + [{"rate": steps[-1]["rate"]}]),
    "extra": ANY_VALUE, "patient.extra": ANY_VALUE, "dose": ANY_VALUE, "patient": ANY_VALUE,
}


GENTLE: dict[str, Any] = {
    "id": IDS, "patient.weight": WELL_FORMED["mass"], "patient.height": WELL_FORMED["length"],
    "patient.age": st.floats(0, 130), "dose.per_course": WELL_FORMED["dose"], "dose.per_day": WELL_FORMED["dose"],
    "dose.days": st.integers(1, 31), "steps.0.rate": WELL_FORMED["rate"], "steps.0.duration": WELL_FORMED["duration"],
    "steps.-1.rate": WELL_FORMED["rate"], "steps": FIELDS["steps"],
    "product": st.sampled_from(["octagam-10", "Octagam 5%", "privigen", "panzyga", "gamunex-c", "gammagard-liquid",
                                "asceniv", "bivigam", "flebogamma-10", "gammaplex-5"]),
    "indication": st.sampled_from(["dermatomyositis", "chronic-itp", "primary-immunodeficiency", "cidp", "mmn"]),
    "patient.risk_factors": st.lists(st.sampled_from(["immobility", "diabetes", "sepsis", "heart-failure",
                                                      "renal-insufficiency", "advanced-age", "corn-allergy"]),
                                     max_size=4),
}


def _set(plan: dict[str, Any], path: str, value: Any, delete: bool) -> None:
    """Set (or delete) ``path`` in the plan where the path still exists; a path into something that is no longer a
    mapping or list of the right size (an earlier mutation replaced it) is left alone."""
    *parents, last = path.split(".")
    target: Any = plan
    for part in [*parents, last]:
        key: Any = part
        if isinstance(target, list):
            try:
                key = int(part)
                target[key]
            except (ValueError, IndexError):
                return
        elif not isinstance(target, dict):
            return
        if part is last:
            if delete:
                if isinstance(target, dict):
                    target.pop(key, None)
                else:
                    del target[key]
            else:
                target[key] = value
            return
        if isinstance(target, dict) and key not in target:
            return
        target = target[key]


@st.composite
def adversarial_plans(draw: st.DrawFn) -> Any:
    """A valid plan hit in one to three places (a field set to something odd, or removed), or no plan at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(ANY_VALUE)
    base = strip(draw(canonical_plans(["immobility", "diabetes", "advanced-age"]))) if draw(st.booleans()) \
        else copy.deepcopy(BASE_PLAN)
    if draw(st.integers(0, 2)) == 0:  # well-formed but extreme: gets past validation more often, into the arithmetic
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(sorted(GENTLE)))
            _set(base, path, draw(GENTLE[path]), delete=False)
        return base
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(sorted(FIELDS)))
        _set(base, path, draw(FIELDS[path]), delete=draw(st.integers(0, 7)) == 0)
    return base


def _yaml_bomb(depth: int) -> str:
    lines = ["a0: &a0 [x, x, x, x]"]
    for n in range(1, depth):
        lines.append(f"a{n}: &a{n} [*a{n - 1}, *a{n - 1}, *a{n - 1}, *a{n - 1}]")
    return "\n".join(lines) + f"\nproduct: octagam-10\nid: *a{depth - 1}\n"


def _serialise(plan: Any, how: str) -> bytes:
    if how == "yaml":
        try:
            return yaml.safe_dump(plan, allow_unicode=True).encode("utf-8", "surrogatepass")
        except (yaml.YAMLError, RecursionError, UnicodeError):
            how = "json"
    try:
        return json.dumps(plan, allow_nan=True).encode()
    except (ValueError, RecursionError):
        return b"{}"


DOCUMENTS = st.one_of(
    st.builds(_serialise, adversarial_plans(), st.sampled_from(["json", "yaml"])),
    st.binary(max_size=200),
    odd_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 200_000).map(lambda d: b"a: " * d + b"1"),
    st.integers(2, 12).map(lambda d: _yaml_bomb(d).encode()),
    st.sampled_from([b"&a [*a]", b"a: &a {b: *a}\nproduct: *a\n", b"!!python/object:os.system {}",
                     b"!!binary aGVsbG8=", b"id: 2001-12-14\nproduct: octagam-10", b"? [a, b]\n: 1",
                     b"\xef\xbb\xbf{}", b"{\"id\": 1e400}", b"id: .nan", b"id: 0x10", b"id: 0o17", b"id: 1_000",
                     b"id: !!int 99999999999999999999999", b"- - - -"]),
)

#: Characters that must never reach a terminal (newline is allowed in our own text).
FORBIDDEN = frozenset([chr(c) for c in range(0x20) if c != 0x0A] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
                      + [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)])


# ----------------------------------------------------------------------------------------------- properties

EXIT_FOR_VERDICT = {"ok": 0, "warn": 1, "block": 3}


def cli_property(document: bytes, fmt: str, explain: bool) -> None:
    """``ivig-safety check -`` on any bytes: a verdict's code with its report, or 2 with an error line, nothing
    else; no traceback; no control characters out."""
    args = ["check", "-", "--format", fmt] + (["--explain"] if explain else [])
    result = CliRunner().invoke(main, args, input=document)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code in (0, 1, 2, 3), f"exit {result.exit_code}: {result.stderr.strip()[:500]}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for text in (result.stdout, result.stderr):
        bad = FORBIDDEN.intersection(text)
        assert not bad, f"control characters reached the terminal: {sorted(map(hex, map(ord, bad)))}"
    if result.exit_code == 2:
        assert result.stdout == ""
        first = result.stderr.splitlines()[0] if result.stderr else ""
        assert first.startswith("error: ") and len(first.strip()) > len("error:") + 3, result.stderr
    else:
        assert result.stdout.strip()
        if fmt == "json":
            assert EXIT_FOR_VERDICT[json.loads(result.stdout)["verdict"]] == result.exit_code


def api_property(plan: Any) -> None:
    """``check(plan)``: a Report, or InvalidPlanError naming at least one problem; any other exception fails."""
    try:
        report = check(plan)
    except InvalidPlanError as exc:
        assert exc.errors and all(str(e).strip() for e in exc.errors)
    else:
        assert isinstance(report, Report) and report.verdict in EXIT_FOR_VERDICT
        json.loads(json.dumps(report.to_json_dict(), allow_nan=False, default=str))


def batch_property(plans: list[Any], fmt: str) -> None:
    """check_many over JSON Lines made of the plans: one encodable row per line, in order, none left unchecked by
    an internal error."""
    lines = [_serialise(p, "json") for p in plans]
    rows = [InputRow(n, "jsonl", line) for n, line in enumerate(lines, 1)]
    results = list(check_many(rows))
    assert [r.line for r in results] == list(range(1, len(lines) + 1))
    internal = [r for r in results if r.internal]
    assert not internal, f"rows left unchecked: {[r.errors for r in internal]}"
    data, counts = _encode_results(results, fmt)
    assert counts.rows == len(lines) and not counts.internal
    text = data.decode("utf-8")
    assert not FORBIDDEN.intersection(text.replace("\n", "")), "control characters in batch output"
    if fmt == "jsonl":
        assert [json.loads(line)["line"] for line in text.splitlines()] == list(range(1, len(lines) + 1))
    else:
        assert len(text.splitlines()) == len(lines)


#: (name, strategy arguments, property) for the tests below and for benchmarks/fuzz.py.
PROPERTIES: list[tuple[str, dict[str, Any], Callable[..., None]]] = [
    ("cli", {"document": DOCUMENTS, "fmt": st.sampled_from(["text", "json"]), "explain": st.booleans()},
     cli_property),
    ("api", {"plan": adversarial_plans()}, api_property),
    ("batch", {"plans": st.lists(adversarial_plans(), min_size=1, max_size=6),
               "fmt": st.sampled_from(["jsonl", "csv"])}, batch_property),
]

def bounded(max_examples: int) -> settings:
    """A fixed, reproducible sample (derandomize) for the test suite; benchmarks/fuzz.py explores new seeds."""
    return settings(deadline=None, database=None, max_examples=max_examples, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@bounded(150)
@given(document=PROPERTIES[0][1]["document"], fmt=PROPERTIES[0][1]["fmt"], explain=PROPERTIES[0][1]["explain"])
def test_fuzz_cli_check(document: bytes, fmt: str, explain: bool) -> None:
    cli_property(document, fmt, explain)


@bounded(200)
@given(plan=adversarial_plans())
def test_fuzz_api_check(plan: Any) -> None:
    api_property(plan)


@bounded(60)
@given(plans=PROPERTIES[2][1]["plans"], fmt=PROPERTIES[2][1]["fmt"])
def test_fuzz_batch_rows(plans: list[Any], fmt: str) -> None:
    batch_property(plans, fmt)


@bounded(100)
@given(text=QUANTITY_TEXT)
def test_fuzz_quantity_text_is_parsed_or_refused_cleanly(text: str) -> None:
    """Any quantity text: a finite, in-range Quantity, or UnitError with a message free of control characters."""
    from ivig_safety.model.units import MAX_MAGNITUDE, UnitError, parse_quantity

    try:
        quantity = parse_quantity(text)
    except UnitError as exc:
        assert str(exc) and not FORBIDDEN.intersection(str(exc))
    else:
        assume(quantity.unit.to_canonical == quantity.unit.to_canonical)  # a unit of no known shape: field's job
        assert math.isfinite(quantity.canonical) and abs(quantity.canonical) <= MAX_MAGNITUDE
        assert all(c.isascii() or c in "µμ" for c in text)


#: Crashes the long fuzzer found (benchmarks/fuzz.py, before the plan model's plausibility bounds): each reached the
#: arithmetic behind validation (int64 overflow in the engine's encoding, a division by a rate that underflowed to
#: zero, int() of an infinite time) and became an internal error. Kept as plain regression cases.
FOUND_BY_FUZZING = [
    {"dose": {"per_course": "321001542870.47784 g/kg", "days": 5},
     "steps": [{"rate": "0.01 mL/kg/min", "duration": "30 min"}, {"rate": "1000000.0 mL/h"}]},
    {"steps": [{"rate": "5e-324 mg/min", "duration": "18.935291370778536 min"},
               {"rate": "3.3440451576437424 mg/kg/min"}]},
    {"steps": [{"rate": "2.2250738585e-313 mL/h"}]},
    {"steps": [{"rate": "5e-324 mg/kg/min"}], "dose": {"per_course": "1.0 g/kg", "days": 1}},
]


@pytest.mark.parametrize("change", FOUND_BY_FUZZING)
def test_inputs_the_fuzzer_found(change: dict[str, Any]) -> None:
    plan = {**copy.deepcopy(BASE_PLAN), **change}
    api_property(plan)
    cli_property(json.dumps(plan).encode(), "json", False)
    batch_property([plan], "jsonl")
