"""The package's exception types: one for bad plans, one for bad rule files.

Why two: a bad plan is the caller's problem (exit code 2, the field named); a bad rule file is the pharmacist's
(the file and the rule named). Neither may ever degrade into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of a plan; ``loc`` is a path such as ``steps[2].rate``."""

    loc: str
    msg: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}" if self.loc else self.msg

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


def format_loc(parts: Iterable[Any]) -> str:
    """Render a pydantic location tuple as ``steps[2].rate``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class InvalidPlanError(ValueError):
    """The plan cannot be checked. ``errors`` lists every field at fault; nothing about the plan was judged."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("invalid plan: " + "; ".join(str(e) for e in errors))

    @classmethod
    def single(cls, loc: str, msg: str) -> "InvalidPlanError":
        return cls([FieldError(loc, msg)])


class RuleFileError(ValueError):
    """A rule, product, vocabulary or policy file is wrong; the message names the file and the entry."""

    def __init__(self, path: str, entry: str | None, problem: str):
        self.path, self.entry, self.problem = path, entry, problem
        where = f"{path}" + (f" [{entry}]" if entry else "")
        super().__init__(f"{where}: {problem}")


class EngineError(RuntimeError):
    """The rule engine failed while evaluating a plan; the plan gets no verdict."""
