"""The counts a batch run ends with: verdicts, and per finding kind and per rule the rows in which it appears."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .rows import BatchResult

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

    def add_all(self, results: list[BatchResult]) -> None:
        """:meth:`add` for each of a chunk's rows, the kinds and rules counted in one update over the chunk (a
        Counter counts a list in C; an update per row cost a microsecond or two)."""
        kinds: list[str] = []
        rules: list[str] = []
        for result in results:
            kinds += result.kinds
            rules += dict.fromkeys(f["rule"] for f in result.findings)
        self.rows += len(results)
        self.verdicts.update([result.verdict for result in results])
        self.internal += sum(1 for result in results if result.internal)
        self.kinds.update(kinds)
        self.rules.update(rules)

    def merge(self, other: "Summary") -> None:
        """Add the counts of another summary (a chunk's, counted in the worker that checked it)."""
        self.rows += other.rows
        self.verdicts.update(other.verdicts)
        self.kinds.update(other.kinds)
        self.rules.update(other.rules)
        self.internal += other.internal

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, **{v: self.verdicts.get(v, 0) for v in ("ok", "warn", "block", "error")},
                "internal": self.internal,
                "kinds": dict(sorted(self.kinds.items())), "rules": dict(sorted(self.rules.items()))}
