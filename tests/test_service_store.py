"""The audit store on SQLite and on a real PostgreSQL: replayed token ids refused (also across two workers), cards
and outcomes recorded without patient identifiers, and the per-rule feedback report (`feedback-report`)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from ivig_safety.cli import main
from ivig_safety.service.store import NOT_CHECKED, AuditStore, IssuedCard, Outcome

from .service_support import ClientKeys, ISSUER, Server, postgres_cluster

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    if request.param == "sqlite":
        audit = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    else:
        audit = AuditStore(request.getfixturevalue("postgres_url"))
        with audit.engine.begin() as conn:  # one cluster per module: start each test from empty tables
            for table in ("cds_card_rules", "cds_feedback", "cds_cards", "cds_seen_tokens"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
    yield audit
    audit.close()


def card(rules: tuple[tuple[str, str], ...], indicator: str = "warning") -> IssuedCard:
    return IssuedCard(str(uuid.uuid4()), "ivig-order-sign", "order-sign", indicator, "a" * 64, rules)


def answer(card_uuid: str, outcome: str, code: str | None = None, minutes: int = 0) -> Outcome:
    at = dt.datetime(2026, 11, 25, 12, tzinfo=UTC) + dt.timedelta(minutes=minutes)
    return Outcome(card_uuid, outcome, at, "urn:x" if code else None, code)


def test_a_token_id_is_accepted_once(store: AuditStore) -> None:
    later = time.time() + 300
    assert store.remember_jti("k1", later) is True
    assert store.remember_jti("k1", later) is False
    assert store.remember_jti("k2", later) is True


def test_expired_token_ids_are_purged(store: AuditStore) -> None:
    assert store.remember_jti("old", time.time() - 1)
    store._next_purge = 0  # the next insert purges
    assert store.remember_jti("new", time.time() + 300)
    assert store.remember_jti("old", time.time() + 300), "an expired id is forgotten, not kept forever"


def test_report_counts_per_rule(store: AuditStore) -> None:
    rate = (("thrombosis-risk", "thrombosis-risk"), ("dermatomyositis-inflammation-thrombosis-risk",
                                                     "thrombosis-risk"))
    cards = [card(rate) for _ in range(5)] + [card((("high-dose", "high-dose"),), "info"),
                                               card(((NOT_CHECKED, "not-checked"),))]
    store.record_cards(cards)
    store.record_outcomes([
        answer(cards[0].uuid, "accepted"),
        answer(cards[1].uuid, "overridden", "benefit-outweighs-risk"),
        answer(cards[2].uuid, "overridden", "benefit-outweighs-risk"),
        answer(cards[3].uuid, "overridden"),
        answer(cards[4].uuid, "ignored"), answer(cards[4].uuid, "accepted", minutes=5),  # the latest answer counts
    ])
    stats = {s.rule: s.as_dict() for s in store.report()}
    thrombosis = stats["thrombosis-risk"]
    assert thrombosis == {
        "rule": "thrombosis-risk", "kinds": ["thrombosis-risk"], "shown": 5, "accepted": 2, "overridden": 3,
        "ignored": 0, "unanswered": 0, "override_rate": 0.6,
        "overridden_by_reason": {"(no reason given)": 1, "benefit-outweighs-risk": 2}}
    assert stats["dermatomyositis-inflammation-thrombosis-risk"]["shown"] == 5
    assert stats["high-dose"]["unanswered"] == 1 and stats["high-dose"]["override_rate"] is None
    assert stats[NOT_CHECKED]["shown"] == 1


def test_report_since_leaves_out_older_cards(store: AuditStore) -> None:
    old, new = card((("high-dose", "high-dose"),)), card((("high-dose", "high-dose"),))
    store.record_cards([old], at=dt.datetime(2026, 1, 1, tzinfo=UTC))
    store.record_cards([new], at=dt.datetime(2026, 11, 1, tzinfo=UTC))
    assert [s.shown for s in store.report()] == [2]
    assert [s.shown for s in store.report(since=dt.datetime(2026, 6, 1, tzinfo=UTC))] == [1]


def test_the_schema_holds_no_patient_identifiers(store: AuditStore) -> None:
    columns = {table: {c["name"] for c in inspect(store.engine).get_columns(table)}
               for table in ("cds_cards", "cds_card_rules", "cds_feedback", "cds_seen_tokens")}
    everything = set().union(*columns.values())
    for word in ("patient", "name", "birth", "weight", "order", "mrn", "comment", "encounter", "user"):
        assert not any(word in column for column in everything if column != "had_comment"), (word, columns)


def test_feedback_report_command_text_json_csv(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    audit = AuditStore(url)
    shown = [card((("max-rate-exceeded", "max-rate-exceeded"),), "critical") for _ in range(4)]
    audit.record_cards(shown)
    audit.record_outcomes([answer(shown[0].uuid, "accepted"),
                           answer(shown[1].uuid, "overridden", "rate-confirmed-with-prescriber")])
    audit.close()
    runner = CliRunner()
    text = runner.invoke(main, ["feedback-report", "--audit", url])
    assert text.exit_code == 0, text.output
    assert "max-rate-exceeded" in text.output and "50%" in text.output
    assert "rate-confirmed-with-prescriber 1" in text.output
    data = json.loads(runner.invoke(main, ["feedback-report", "--audit", url, "--format", "json"]).output)
    first = data["rules"][0]
    assert {k: first[k] for k in ("rule", "shown", "accepted", "overridden", "unanswered", "override_rate")} == {
        "rule": "max-rate-exceeded", "shown": 4, "accepted": 1, "overridden": 1, "unanswered": 2,
        "override_rate": 0.5}
    rows = runner.invoke(main, ["feedback-report", "--audit", url, "--format", "csv"]).output.splitlines()
    assert rows[0].startswith("rule,kinds,shown") and rows[1].startswith("max-rate-exceeded,max-rate-exceeded,4,1,1,")
    later = runner.invoke(main, ["feedback-report", "--audit", url, "--since", "2999-01-01"])
    assert later.exit_code == 0 and "No cards recorded" in later.output
    missing = runner.invoke(main, ["feedback-report", "--audit", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert missing.exit_code == 2 and "no audit database" in missing.output


def test_two_workers_on_postgresql_accept_a_token_once(tmp_path: Path, postgres_url: str) -> None:
    """The replay cache is the shared database: the same token sent to two workers at once passes once."""
    keys = ClientKeys()
    jwks = keys.write_jwks(tmp_path)
    server = Server(tmp_path, ["--trust", f"{ISSUER}={jwks}"], audit_url=postgres_url, workers=2)
    try:
        aud = f"{server.base_url}/cds-services"
        token = keys.token(aud)
        with httpx.Client(timeout=10) as client:
            def call(_: int) -> int:
                return client.get(aud, headers={"Authorization": f"Bearer {token}"}).status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(call, range(24)))
            assert sorted(codes) == [200] + [401] * 23, codes
            fresh = client.get(aud, headers={"Authorization": f"Bearer {keys.token(aud)}"})
            assert fresh.status_code == 200
    finally:
        server.stop()
