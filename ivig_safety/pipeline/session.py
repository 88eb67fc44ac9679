"""One evaluation in one durable_rules session: assert the fact, read the rules that fired off the action queue,
retract the fact. The per-plan half of pipeline/engine.py, in a module of its own so that mypyc compiles it
(pyproject.toml, ``mypyc-modules``): run as Python, this loop around the C core was about 3 us of every plan.

engine.py keeps everything else: creating and freeing the C core's rulesets, the pool of sessions, the locks. It is
also the only module that imports the C core (tests/test_layers.py): a :class:`Session` is handed the core module
and calls it by attribute, so a test that replaces one of the core's functions reaches sessions already made. It is
handed the JSON serialiser too (orjson's ``dumps``): mypyc compiles this module in the build's own environment, where
the runtime dependencies may not be installed, so it imports none.
"""

from __future__ import annotations

from typing import Any, Final

from ..model.errors import EngineError

_NOT_HANDLED: Final = 1  # durable_rules: no rule matched the fact


class Session:
    """One set of durable_rules ruleset handles, used by one thread at a time (engine.Engine checks sessions out)."""

    def __init__(self, core: Any, dumps: Any, handles: list[int]) -> None:
        self.core = core
        self.dumps = dumps  # a dict -> JSON bytes
        self.handles = handles
        self.asserted = 0  # facts asserted so far: each gets the next id

    def run(self, fact: dict[str, Any]) -> set[str]:
        """The ids of the rules the fact fired, in every ruleset of the session; the fact is retracted from each
        again, however the evaluation ends, so evaluations share nothing."""
        core = self.core
        self.asserted += 1
        text: str = self.dumps({**fact, "sid": "0", "id": self.asserted}).decode()
        fired: set[str] = set()
        for handle in self.handles:
            result = core.assert_fact(handle, text)
            code = result[0]
            if code == 0:
                try:
                    _drain(core, handle, result[1], fired)
                finally:
                    _retract(core, handle, text)
            elif code != _NOT_HANDLED:
                raise EngineError(f"durable_rules refused the facts (code {code})")
            else:
                _retract(core, handle, text)
        return fired


def _drain(core: Any, handle: int, state: int, fired: set[str]) -> None:
    """Add the rule of each action durable_rules queued for this fact to ``fired``."""
    started = core.start_action_for_state(handle, state)
    if not started:
        return
    message: str = started[1]
    while True:
        # The rule an action message is for is its one key. Rule ids are kebab-case (checked at load), so the key
        # needs no JSON unescaping and the rest of the message (a copy of the fact) need not be parsed.
        if message[:2] != '{"':
            raise EngineError(f"unexpected action message from durable_rules: {message[:80]!r}")
        fired.add(message[2:message.index('"', 2)])
        following = core.complete_and_start_action(handle, state)
        if not following:
            return
        message = following


def _retract(core: Any, handle: int, text: str) -> None:
    result = core.retract_fact(handle, text)
    code = result[0]
    if code != 0 and code != _NOT_HANDLED:
        raise EngineError(f"durable_rules could not retract the facts (code {code})")
    if code == 0 and core.start_action_for_state(handle, result[1]):
        raise EngineError("a rule fired on retraction; rules must not test for absence")
