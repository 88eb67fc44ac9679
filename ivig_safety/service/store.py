"""The audit store: which cards were shown, what the prescriber did with them, and which token ids were used.

A real database through SQLAlchemy 2: a SQLite file by default (``sqlite:///audit.db``), PostgreSQL
(``postgresql+psycopg://user@host/db``) when several replicas share it. What is stored names no patient: a card's
uuid, the service and hook, the rule ids and kinds behind it, its indicator, the rule set's sha256 and the time; an
outcome's card uuid, outcome, override reason code and time. A clinician's free-text override comment is not stored
(it may name the patient); only whether there was one. Token ids are stored as a sha256 of issuer and jti.

The per-rule report (``ivig-safety feedback-report``) is computed here too, so the command stays a thin shell.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, create_engine,
                        delete, event, insert, select)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

cards = Table(
    "cds_cards", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("issued_at", DateTime(timezone=True), nullable=False, index=True),
    Column("service", String(64), nullable=False),
    Column("hook", String(32), nullable=False),
    Column("indicator", String(8), nullable=False),
    Column("ruleset_sha256", String(64), nullable=False),
)

card_rules = Table(
    "cds_card_rules", metadata,
    Column("card_uuid", String(36), ForeignKey("cds_cards.uuid", ondelete="CASCADE"), primary_key=True),
    Column("rule", String(128), primary_key=True),
    Column("kind", String(64), nullable=False),
)

outcomes = Table(
    "cds_feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(36), nullable=False, index=True),
    Column("outcome", String(16), nullable=False),
    Column("reason_system", String(256)),
    Column("reason_code", String(64)),
    Column("had_comment", Boolean, nullable=False, default=False),
    Column("outcome_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

seen_tokens = Table(
    "cds_seen_tokens", metadata,
    Column("key", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

#: The pseudo rule under which cards for orders that could not be checked are counted.
NOT_CHECKED = "(order not checked)"


@dataclass(frozen=True)
class IssuedCard:
    uuid: str
    service: str
    hook: str
    indicator: str
    ruleset_sha256: str
    rules: tuple[tuple[str, str], ...]  # (rule id, kind)


@dataclass(frozen=True)
class Outcome:
    card_uuid: str
    outcome: str  # accepted | overridden | ignored
    outcome_at: dt.datetime
    reason_system: str | None = None
    reason_code: str | None = None
    had_comment: bool = False


@dataclass
class RuleStats:
    rule: str
    kinds: set[str] = field(default_factory=set)
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    ignored: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def unanswered(self) -> int:
        return self.shown - self.accepted - self.overridden - self.ignored

    @property
    def override_rate(self) -> float | None:
        """Overridden of the cards answered (accepted or overridden); None before any answer."""
        answered = self.accepted + self.overridden
        return round(self.overridden / answered, 4) if answered else None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "kinds": sorted(self.kinds), "shown": self.shown, "accepted": self.accepted,
                "overridden": self.overridden, "ignored": self.ignored, "unanswered": self.unanswered,
                "override_rate": self.override_rate, "overridden_by_reason": dict(sorted(self.by_reason.items()))}


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver the service extra installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class AuditStore:
    """One engine (a connection pool) per process; every method is one short transaction."""

    def __init__(self, url: str, *, checkpoint_every_s: float = 2.0):
        self.url = normalise_url(url)
        self.engine: Engine = _engine(self.url)
        metadata.create_all(self.engine)
        self._next_purge = 0.0
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.url.startswith("sqlite") and checkpoint_every_s > 0:
            self._checkpointer = threading.Thread(target=self._checkpoint, args=(checkpoint_every_s,),
                                                  name="audit-checkpoint", daemon=True)
            self._checkpointer.start()

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
        self.engine.dispose()

    def _checkpoint(self, every_s: float) -> None:
        """SQLite: copy the write-ahead log into the database file here, off the request path. Left to SQLite, the
        commit that crosses 1,000 pages does it, with the file's fsync, inside somebody's call (p99 at 50 calls/s
        went from about 10 ms to 60-90 ms on this machine's disk with two workers)."""
        while not self._stop.wait(every_s):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # noqa: BLE001 - a busy or vanished file: the next round tries again
                continue

    def remember_jti(self, key: str, expires_at: float) -> bool:
        """Record a token id; False if it was already recorded (a replay). Expired ids are purged now and then."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                if now >= self._next_purge:
                    self._next_purge = now + 60
                    conn.execute(delete(seen_tokens).where(seen_tokens.c.expires_at < now))
                conn.execute(insert(seen_tokens).values(key=key, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    def record_cards(self, issued: Iterable[IssuedCard], at: dt.datetime | None = None) -> None:
        issued = list(issued)
        if not issued:
            return
        at = at or _now()
        with self.engine.begin() as conn:
            conn.execute(insert(cards), [{"uuid": c.uuid, "issued_at": at, "service": c.service, "hook": c.hook,
                                          "indicator": c.indicator, "ruleset_sha256": c.ruleset_sha256}
                                         for c in issued])
            rows = [{"card_uuid": c.uuid, "rule": rule, "kind": kind} for c in issued for rule, kind in c.rules]
            if rows:
                conn.execute(insert(card_rules), rows)

    def known_cards(self, uuids: Iterable[str]) -> set[str]:
        uuids = list(set(uuids))
        if not uuids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.scalars(select(cards.c.uuid).where(cards.c.uuid.in_(uuids))))

    def record_outcomes(self, answers: Iterable[Outcome]) -> None:
        received = _now()
        rows = [{"card_uuid": o.card_uuid, "outcome": o.outcome, "reason_system": o.reason_system,
                 "reason_code": o.reason_code, "had_comment": o.had_comment, "outcome_at": o.outcome_at,
                 "received_at": received} for o in answers]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(outcomes), rows)

    def report(self, since: dt.datetime | None = None) -> list[RuleStats]:
        """Per rule: cards shown since ``since``, and what became of them. A card's outcome is its latest answer
        (a card ignored and later accepted counts as accepted); a card with no answer is unanswered."""
        query = select(cards.c.uuid, card_rules.c.rule, card_rules.c.kind).select_from(
            cards.outerjoin(card_rules, card_rules.c.card_uuid == cards.c.uuid))
        answers = select(outcomes.c.card_uuid, outcomes.c.outcome, outcomes.c.reason_code, outcomes.c.outcome_at,
                         outcomes.c.id).join(cards, cards.c.uuid == outcomes.c.card_uuid)
        if since is not None:
            query = query.where(cards.c.issued_at >= since)
            answers = answers.where(cards.c.issued_at >= since)
        latest: dict[str, tuple[Any, ...]] = {}
        with self.engine.connect() as conn:
            for uuid, outcome, reason, at, row_id in conn.execute(answers):
                stamp = (_aware(at), row_id)
                if uuid not in latest or stamp > latest[uuid][0]:
                    latest[uuid] = (stamp, outcome, reason)
            per_rule: dict[str, RuleStats] = {}
            for uuid, rule, kind in conn.execute(query):
                rule = rule or NOT_CHECKED
                stats = per_rule.setdefault(rule, RuleStats(rule))
                if kind:
                    stats.kinds.add(kind)
                stats.shown += 1
                if uuid in latest:
                    _, outcome, reason = latest[uuid]
                    setattr(stats, outcome, getattr(stats, outcome) + 1)
                    if outcome == "overridden":
                        key = reason or "(no reason given)"
                        stats.by_reason[key] = stats.by_reason.get(key, 0) + 1
        return sorted(per_rule.values(), key=lambda s: (-s.shown, s.rule))


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer; several workers share it
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a power cut may lose the last few
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in AuditStore._checkpoint, not in a call
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite gives naive datetimes back: they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
