"""ivig-safety: check IVIG infusion plans against the package insert before they reach a patient.

The public API is small: :func:`check` one plan, the models it takes and returns, and the exception it raises.
Everything else is private by convention.
"""

from .batch import check_many
from .check import Checker, check, get_checker
from .errors import EngineError, FieldError, InvalidPlanError, RuleFileError
from .plan import Plan
from .report import Finding, RateTriple, Report, ScheduleStep

__all__ = [
    "check", "check_many", "Checker", "get_checker", "Plan", "Report", "Finding", "RateTriple", "ScheduleStep",
    "InvalidPlanError", "RuleFileError", "EngineError", "FieldError",
]
__version__ = "0.1.0"
