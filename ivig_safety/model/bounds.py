"""Every plausibility bound on input, in one place.

Why: a number outside these ranges is not a clinical situation to judge but garbage, or an attack (an id of 2**64,
a dose of 1e300 g/kg, a rate of 5e-324 mg/kg/h). Each is refused with a message naming the field before any
arithmetic sees it, so nothing downstream can overflow, divide by zero or run for ever. None of these is a clinical
threshold: those live in rules/ and in the policy.
"""

from __future__ import annotations

#: The heaviest person recorded weighed about 635 kg; the smallest surviving newborns about 0.25 kg.
WEIGHT_KG = (0.25, 650.0)
HEIGHT_CM = (20.0, 280.0)
AGE_YEARS = (0.0, 130.0)
#: One infusion day's step cannot last longer than the day.
STEP_MINUTES = (0.0, 24 * 60.0)
#: A course cannot repeat within a day of the last, and ten years is history.
INTERVAL_DAYS = (1.0, 3660.0)
#: A weight measured in the future is an error; one from over a century ago is garbage.
WEIGHT_AGE_DAYS = (0.0, 36600.0)
#: FHIR input: a Bundle beyond these is not one order and its chart, and is refused before validation so that a
#: hostile document costs milliseconds (entries; nesting depth; nodes of the JSON tree).
MAX_BUNDLE_ENTRIES = 2000
MAX_FHIR_DEPTH = 40
#: A JSON line (batch input) nested deeper than this is refused before it is decoded: the same answer on every
#: Python version (3.11's decoder hits its recursion limit near 1,000 levels, 3.13's does not).
MAX_JSON_DEPTH = 64
MAX_FHIR_NODES = 200_000
#: Infusion days in one course, and titration steps in one day.
DAYS = (1, 31)
MAX_STEPS = 50
#: A rate (mg/kg/min, for this patient and product) outside this range is not an infusion: 1e-4 mg/kg/min would take
#: a week to give 1 g/kg; 1e6 mg/kg/min is about 70 litres a minute for 70 kg of a 10% product.
RATE_MG_KG_MIN = (1.0e-4, 1.0e6)
#: A daily dose (g/kg) beyond this is garbage, not a slip: 50 times the largest labelled daily dose.
MAX_DOSE_G_PER_KG = 100.0
#: Order ids: integers that every JSON reader keeps exactly (JavaScript's safe integers), text of a sane length.
MAX_ID_INT = 2**53 - 1
MAX_ID_CHARS = 128
