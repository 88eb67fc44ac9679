"""Rule evaluation with durable_rules: facts in, the ids of every rule that fired out. The only module that imports
durable_rules, so the engine can be replaced behind this interface. (The per-plan loop of an evaluation, assert,
read what fired, retract, is in pipeline/session.py, which mypyc compiles; this module hands it the C core.)

Why it drives durable_rules' C core directly instead of ``durable.engine.Host`` (pitfalls measured while building
it):

* Facts, not events: a posted event is consumed by the first matching rule, an asserted fact fires every match.
  Each evaluation asserts one fact and retracts it afterwards, so evaluations share nothing.
* Host swallows exceptions raised inside actions and keeps them in the session state. Here no Python action runs
  inside the engine at all: the fired rules are read off the engine's action queue, and any error the engine
  reports is raised as :class:`EngineError`; the plan then gets no verdict.
* Host starts timer threads, and one ruleset is not safe to share between threads (segfaults, mixed results).
  Here each ruleset handle belongs to one :class:`~.session.Session`; sessions live in a pool and a thread checks
  one out for the whole evaluation, so no handle is ever used by two threads at once. Handles are never freed by
  durable_rules, so the pool is bounded and sessions are reused.
* More than 64 rules matching one fact make durable_rules fire nothing (error 303), so rules are split into
  rulesets of at most ``RULES_PER_RULESET``.
* Numbers arrive as integers (see fields.SCALE): the C parser rejects exponents such as ``5e-05``.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from typing import Any

from .. import _durable_rules_engine as _dre
import orjson

from ..knowledge.rules import RuleSet
from ..model.errors import EngineError, RuleFileError
from .facts import encoding_plan
from .session import Session

#: What evaluates the rules: durable_rules' C core, vendored unmodified (third_party/durable_rules/README.md).
ENGINE_VERSION = "durable_rules 2.0.28 C core (vendored, built with ivig-safety)"
RULES_PER_RULESET = 48
_CREATE_LOCK = threading.Lock()  # ruleset creation touches the C core's global tables
_RULESET_NAMES = itertools.count()


def _renamed(condition: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """A rule's compiled condition with each fact key replaced by the engine's name for it. Operators
    (``$and``, ``$gt``, ...) are kept; conditions are flat (a key's value is a number or a word), which is checked."""
    out: dict[str, Any] = {}
    for key, value in condition.items():
        if key.startswith("$"):
            out[key] = [_renamed(part, keys) for part in value] if isinstance(value, list) else _renamed(value, keys)
        elif isinstance(value, (dict, list)):
            raise RuleFileError("rules/safety", None, f"unexpected nested condition under {key!r}: {value!r}")
        else:
            out[keys[key]] = value
    return out


def _new_session(chunks: list[dict[str, Any]]) -> Session:
    """A session with a ruleset handle per chunk of rules; a rule the C core's compiler refuses is a RuleFileError."""
    with _CREATE_LOCK:
        try:
            handles = [_dre.create_ruleset(f"ivig_{next(_RULESET_NAMES)}", json.dumps(chunk)) for chunk in chunks]
        except Exception as exc:  # durable_rules_engine.error: a condition its compiler refuses
            rules = ", ".join(rule for chunk in chunks for rule in chunk)
            raise RuleFileError("rules/safety", None, f"durable_rules refused the rule set ({exc}); "
                                                      f"rules: {rules}") from exc
    return Session(_dre, orjson.dumps, handles)


def _close(session: Session) -> None:
    """Free the C core's rulesets of a session (durable_rules never frees them itself: about 350 KB a session)."""
    handles, session.handles = session.handles, []
    for handle in handles:
        # the session's state first: deleting only the ruleset leaves about 0.5 MB of a used session behind
        try:
            _dre.delete_state(handle, "0")
        except _dre.error:  # no state yet (the session failed before its first fact): nothing to free
            pass
        _dre.delete_ruleset(handle)


class Engine:
    """Evaluates facts against a compiled rule set; safe to call from many threads at once."""

    def __init__(self, ruleset: RuleSet, max_sessions: int | None = None):
        self.ruleset = ruleset
        #: The engine's name for each fact key some rule reads: "k0", "k1", ... rather than names such as
        #: "first_rate__minus__initial_rate_with_tolerance". The C core parses and hashes every key of every fact it
        #: is given, and copies the fact into each action message; short keys measured about 12% off its time.
        self.keys = {name: f"k{number}" for number, name in enumerate(sorted(ruleset.keys))}
        self.encoding = encoding_plan(ruleset.keys, self.keys)
        rules = list(ruleset.rules)
        self._chunks = [
            {rule.id: {"all": [{"m": _renamed(rule.condition, self.keys)}]} for rule in rules[i:i + RULES_PER_RULESET]}
            for i in range(0, len(rules), RULES_PER_RULESET)
        ]
        self._order = {rule.id: n for n, rule in enumerate(rules)}
        self._max = max_sessions or max(4, 2 * (os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)
        self._idle: list[Session] = [_new_session(self._chunks)]  # compile now: a refused rule fails at load
        self._created = 1
        self._waiting = 0  # threads waiting for a session (changed under the lock)
        self._closed = False

    def _checkout(self) -> Session:
        try:
            return self._idle.pop()  # the common case: list.pop is atomic, no lock needed (nor taken per plan)
        except IndexError:
            pass
        with self._lock:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._created < self._max:
                    self._created += 1
                    break
                self._waiting += 1
                try:
                    # a session checked in without the lock (see _checkin) may not notify: look again soon
                    self._available.wait(timeout=0.01)
                finally:
                    self._waiting -= 1
        try:
            return _new_session(self._chunks)
        except BaseException:
            self._discard()
            raise

    def _checkin(self, session: Session) -> None:
        self._idle.append(session)  # atomic; the lock only when a thread is waiting or the engine was closed
        if self._waiting or self._closed:
            with self._lock:
                if self._closed:
                    idle, self._idle = self._idle, []
                else:
                    self._available.notify()
                    return
            for left in idle:
                _close(left)  # the engine was closed while this session was out

    def _discard(self, session: Session | None = None) -> None:
        if session is not None:
            _close(session)
        with self._lock:
            self._created -= 1
            self._available.notify()

    def close(self) -> None:
        """Free every idle session now and every busy one when it is checked in. Called when the engine is
        garbage-collected (a Checker dropped from the cache and held by no one): durable_rules would otherwise keep
        its C memory for the life of the process."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for session in idle:
            _close(session)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to free into
            pass

    def record(self, named: dict[str, Any]) -> dict[str, Any]:
        """A fact given by field names (``{"peak_rate": 4000000, ...}``, values already as the engine takes them)
        in the engine's own keys, for :meth:`evaluate`; names no rule reads are left out (no rule could match
        them). Facts.encode builds this record directly."""
        return {self.keys[name]: value for name, value in named.items() if name in self.keys}

    def evaluate(self, fact: dict[str, Any]) -> list[str]:
        """Ids of every rule the fact satisfies, in rule-file order. The fact is keyed as :attr:`keys` says
        (Facts.encode, or :meth:`record` for one given by field names)."""
        session = self._checkout()
        try:
            fired = session.run(fact)
        except BaseException:
            self._discard(session)  # a session that failed mid-way may hold a fact: never reuse it, free it
            raise
        self._checkin(session)
        return sorted(fired, key=self._order.__getitem__)
