"""``ivig-safety feedback-report``: per rule, cards shown, accepted, overridden (by reason), unanswered, and the
override rate, from the service's audit database: how a pharmacy finds the rules that cause alert fatigue."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import click

from .options import fail


@click.command("feedback-report")
@click.option("--audit", "audit_url", default="sqlite:///audit.db", show_default=True,
              help="Audit database URL, as given to serve.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only cards shown from this date (UTC) on.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True,
              help="text: a table for people; json or csv: for programs.")
def feedback_report(audit_url: str, since: dt.datetime | None, fmt: str) -> None:
    """Per rule: cards shown, accepted, overridden (by reason), unanswered, and the override rate
    (overridden / answered)."""
    try:
        from ..service.store import AuditStore
    except ImportError as exc:
        fail(f"the report needs the service extra: pip install 'ivig-safety[service]' ({exc.name} is missing)")
    if audit_url.startswith("sqlite:///") and audit_url != "sqlite:///:memory:":
        import os

        if not os.path.exists(audit_url.removeprefix("sqlite:///")):
            fail(f"no audit database at {audit_url.removeprefix('sqlite:///')}")
    try:
        store = AuditStore(audit_url)
        stats = store.report(since.replace(tzinfo=dt.timezone.utc) if since else None)
        store.close()
    except Exception as exc:  # noqa: BLE001 - an unreachable database: one line, no traceback
        fail(f"audit database {audit_url.split('@')[-1]}: {type(exc).__name__}")
    rows = [s.as_dict() for s in stats]
    if fmt == "json":
        click.echo(json.dumps({"since": since.date().isoformat() if since else None, "rules": rows}, indent=2))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["rule", "kinds", "shown", "accepted", "overridden", "ignored", "unanswered",
                         "override_rate", "overridden_by_reason"])
        for r in rows:
            writer.writerow([r["rule"], " ".join(r["kinds"]), r["shown"], r["accepted"], r["overridden"],
                             r["ignored"], r["unanswered"], "" if r["override_rate"] is None else r["override_rate"],
                             "; ".join(f"{k}={v}" for k, v in r["overridden_by_reason"].items())])
        click.echo(out.getvalue(), nl=False)
    else:
        if not rows:
            click.echo("No cards recorded" + (f" since {since.date()}" if since else "") + ".")
            return
        click.echo(f"{'rule':44} {'shown':>6} {'accept':>6} {'overr.':>6} {'unans.':>6} {'rate':>6}  reasons")
        for r in rows:
            rate = "-" if r["override_rate"] is None else f"{r['override_rate']:.0%}"
            reasons = ", ".join(f"{k} {v}" for k, v in r["overridden_by_reason"].items())
            click.echo(f"{r['rule'][:44]:44} {r['shown']:>6} {r['accepted']:>6} {r['overridden']:>6} "
                       f"{r['unanswered']:>6} {rate:>6}  {reasons}")
