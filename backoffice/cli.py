"""`flask --app main customers|handoffs|outbox|audit …`: the back office's commands.

Each command checks its input, calls one service function, and prints what happened. Errors become one line on
stderr and a non-zero exit status: 1 refused or not found (nothing changed), 2 usage, 3 an import with rejected
rows (the good rows were imported). `--operator NAME` is required for every change and signs its audit rows.
"""
from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import datetime as dt
from zoneinfo import ZoneInfo

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from backoffice import audit, customers, handoffs, importer, outbox, values
from backoffice.errors import BackofficeError
from cardstore.errors import StoreUnavailable
from safetext import escaped, escaped_all

EXIT_REJECTED_ROWS = 3

customers_cli = AppGroup("customers", help="Customers: import, show, delete, purge, re-enable codes.")
handoffs_cli = AppGroup("handoffs", help="Hand-offs to a human (reactivation requests): list and answer.")
outbox_cli = AppGroup("outbox", help="Notifications to customers: list, deliver, relay.")
audit_cli = AppGroup("audit", help="The audit trail: who changed what, when.")


def _service():
    return current_app.extensions["lockcard"]


def _phone(value: str) -> str:
    return values.phone(value, _service().settings.default_region)


def _zone() -> ZoneInfo:
    """Times are shown in the call centre's zone (LOCAL_TIMEZONE, Asia/Tokyo by default), with its offset."""
    return ZoneInfo(_service().settings.local_timezone)


def _echo(text: object = "") -> None:
    """Print to the operator's terminal with control characters shown, never run: a name from an imported file
    or a note may hold an escape sequence (OSC 52 writes the clipboard)."""
    click.echo(escaped(str(text)))


def reported(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the services' errors into a one-line message and exit status 1; nothing was changed."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BackofficeError as exc:
            raise click.ClickException(str(exc)) from None
        except StoreUnavailable as exc:
            raise click.ClickException(f"the store is unavailable or not migrated ({exc}): nothing was changed; "
                                       "check DATABASE_URL and run `flask store upgrade`") from None

    return wrapper


def operator_option(required: bool = True) -> Callable[..., Any]:
    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is None and not required:
            return None
        try:
            return values.operator(value)
        except BackofficeError as exc:
            raise click.BadParameter(str(exc)) from None

    help_ = "Your name, as the audit trail records it." + ("" if required else " Default: system:outbox.")
    return click.option("--operator", "operator", metavar="NAME", required=required, callback=check, help=help_)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(escaped_all(data), ensure_ascii=False, indent=2))



def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], empty: str) -> None:
    if not rows:
        _echo(empty)
        return
    cells = [[("" if r.get(key) is None else str(r.get(key))) for key, _ in columns] for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    _echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)).rstrip())
    for c in cells:
        _echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


# --- customers ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Any]:
    """A progress bar on a terminal (stderr), nothing when the output goes to a file or a pipe."""
    if not sys.stderr.isatty():
        with importer.no_progress(label, total) as bar:
            yield bar
        return
    with click.progressbar(length=max(total, 1), label=label.ljust(14), file=sys.stderr) as bar:
        yield bar


@customers_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@operator_option()
@click.option("--encoding", type=click.Choice(importer.ENCODINGS), help="Skip detection: the file is in this encoding.")
@click.option("--update-existing", is_flag=True, help="Overwrite name, e-mail and zip code of customers already in the store.")
@click.option("--dry-run", is_flag=True, help="Check every row against the store, change nothing.")
@json_option
@reported
def import_command(file: Path, operator: str, encoding: str | None, update_existing: bool, dry_run: bool,
                   as_json: bool) -> None:
    """Import customers and cards from FILE (CSV, one row per card).

    Columns: phone_number,name,email,zip_code,card_last4,card_vendor,card_status. UTF-8 (with or without BOM) or
    Shift_JIS/CP932. Rows are merged by phone number; running the same file again changes nothing.
    """
    started = time.perf_counter()
    report = importer.import_csv(_service().store, file.read_bytes(), operator=operator,
                                 region=_service().settings.default_region, filename=file.name, encoding=encoding,
                                 update_existing=update_existing, dry_run=dry_run, progress=_progress)
    elapsed = time.perf_counter() - started
    if as_json:
        _echo_json({**report.as_dict(), "seconds": round(elapsed, 2)})
    else:
        for r in sorted(report.rejected, key=lambda r: r.line):
            _echo(f"line {r.line}: rejected: {'; '.join(r.reasons)}")
        how = {"BOM": "detected from its BOM", "detected": "detected", "given": "as given"}[report.encoding_how]
        _echo(f"{'checked (dry run, nothing changed)' if dry_run else 'imported'} {file.name}: "
                   f"encoding {report.encoding} ({how}), {elapsed:.1f} s")
        if report.ignored_columns:
            _echo(f"ignored columns: {', '.join(report.ignored_columns)}")
        _echo(f"rows read {report.read}, imported {report.imported}, merged {report.merged}, "
                   f"unchanged {report.unchanged}, rejected {len(report.rejected)}")
        _echo(f"customers created {report.customers_created}, updated {report.customers_updated}; "
                   f"cards added {report.cards_added}")
    if report.rejected:
        click.get_current_context().exit(EXIT_REJECTED_ROWS)


@customers_cli.command("show")
@click.argument("phone")
@json_option
@click.option("--reveal", is_flag=True, help="Show the full e-mail address (audited: needs --operator).")
@click.option("--operator", metavar="NAME", help="Your name; required with --reveal.")
@click.option("--audit-rows", default=customers.AUDIT_ROWS_SHOWN, show_default=True, type=click.IntRange(0, 1000))
@reported
def show_command(phone: str, as_json: bool, reveal: bool, operator: str | None, audit_rows: int) -> None:
    """The customer with PHONE and their history: cards, tickets, reissues, hand-offs, notifications, audit."""
    reveal_by = values.operator(operator) if reveal else None
    with _service().store.unit_of_work() as uow:
        data = customers.show(uow, _phone(phone), reveal_by=reveal_by, audit_rows=audit_rows, zone=_zone())
    if as_json:
        _echo_json(data)
        return
    c = data["customer"]
    _echo(f"{c['name']}  {c['phone_national']} ({c['phone_number']})"
               + (f"  DELETED at {c['deleted_at']}" if c["deleted_at"] else ""))
    _echo(f"  e-mail {c['email'] or '-'}   zip {c['zip_code']}   customer since {c['created_at']}")
    otp = (f"disabled at {c['otp_disabled_at']} (customers otp-enable)" if c["otp_disabled_at"]
           else f"enabled, {c['otp_failures']} wrong code(s) in a row")
    _echo(f"  one-time codes: {otp}")
    sections = [
        ("Cards", data["cards"], [("card", "card"), ("status", "status"), ("updated_at", "updated")]),
        ("Lock tickets", data["lock_tickets"], [("number", "ticket"), ("card", "card"), ("lock_type", "type"),
                                                ("reason", "reason"), ("created_at", "at")]),
        ("Reissue requests", data["reissue_requests"], [("number", "ack"), ("card", "card"),
                                                        ("delivery_business_days", "days"), ("created_at", "at")]),
        ("Hand-offs", data["handoffs"], [("id", "id"), ("requested_action", "request"), ("card", "card"),
                                         ("status", "status"), ("created_at", "at"), ("answered_by", "by"),
                                         ("resolution", "resolution"), ("note", "note")]),
        ("Notifications", data["notifications"], [("id", "id"), ("kind", "kind"), ("channel", "via"), ("to", "to"),
                                                  ("status", "status"), ("attempts", "tries"), ("sent_at", "sent")]),
    ]
    for title, rows, columns in sections:
        _echo(f"\n{title}")
        _table(rows, columns, "  (none)")
    _echo("\nLatest audit rows")
    _audit_table(data["audit"], customer=False)


@customers_cli.command("delete")
@click.argument("phone")
@operator_option()
@reported
def delete_command(phone: str, operator: str) -> None:
    """Delete the customer with PHONE logically: the webhook no longer knows them; purge removes them later."""
    with _service().store.unit_of_work() as uow:
        deleted_at = customers.delete_customer(uow, _phone(phone), operator)
    _echo(f"customer {values.masked_phone(_phone(phone))} deleted at {deleted_at.isoformat(timespec='seconds')}Z "
               f"by {operator} (kept until purged)")


@customers_cli.command("purge")
@click.argument("phone", required=False)
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="Retention: purge customers deleted longer ago than this (180d, 26w, 1y).")
@operator_option()
@reported
def purge_command(phone: str | None, older_than: str, operator: str) -> None:
    """Remove for good the customers deleted longer ago than --older-than (only PHONE, if given).

    Their cards, tickets, hand-offs and notifications go too; the audit trail keeps a row per customer purged,
    with counts and no personal data.
    """
    retention = values.duration(older_than)
    floor = dt.timedelta(days=_service().settings.retention_floor_days)
    purged = customers.purge(_service().store, retention, operator, phone_e164=_phone(phone) if phone else None,
                             floor=floor)
    _echo(f"purged {len(purged)} customer(s) deleted more than {older_than} ago")


@customers_cli.command("otp-enable")
@click.argument("phone")
@operator_option()
@reported
def otp_enable_command(phone: str, operator: str) -> None:
    """Let the customer with PHONE receive one-time codes again after a lock-out by wrong codes."""
    with _service().store.unit_of_work() as uow:
        before = customers.otp_enable(uow, _phone(phone), operator)
    _echo(f"one-time codes enabled for {values.masked_phone(_phone(phone))} by {operator} "
               f"(was: {'disabled' if before['otp_disabled_at'] else 'enabled'}, {before['otp_failures']} wrong codes)")


# --- hand-offs ------------------------------------------------------------------------------------------------

@handoffs_cli.command("list")
@click.option("--status", type=click.Choice(handoffs.STATUSES), help="Only unanswered (未回答) or answered (回答済み).")
@json_option
@reported
def handoffs_list_command(status: str | None, as_json: bool) -> None:
    """Hand-offs, oldest first."""
    with _service().store.unit_of_work() as uow:
        rows = handoffs.list_handoffs(uow, status, zone=_zone())
    if as_json:
        _echo_json(rows)
        return
    _table(rows, [("id", "id"), ("created_at", "at"), ("status", "status"), ("requested_action", "request"),
                  ("customer", "customer"), ("card", "card"), ("card_status_at_request", "status then"),
                  ("card_status", "status now"), ("answered_by", "by"), ("resolution", "resolution"),
                  ("note", "note")], "no hand-offs")


@handoffs_cli.command("show")
@click.argument("handoff_id", metavar="ID", type=int)
@operator_option()
@json_option
@reported
def handoffs_show_command(handoff_id: int, operator: str, as_json: bool) -> None:
    """Hand-off ID with whom to call back (name, full number: the viewing is audited), the card's status then and
    now, and the conversation's tickets and notices."""
    with _service().store.unit_of_work() as uow:
        data = handoffs.show(uow, handoff_id, operator, zone=_zone())
    if as_json:
        _echo_json(data)
        return
    h, c = data["handoff"], data["customer"]
    _echo(f"hand-off {h['id']}  {h['status']}  requested {h['created_at']}: {h['requested_action']} {h['card']}")
    _echo(f"  call back: {c['name']}  {c['phone_national']} ({c['phone_number']})"
          + (f"  DELETED at {c['deleted_at']}" if c["deleted_at"] else ""))
    _echo(f"  card status when asked: {h['card_status_at_request'] or '-'}; now: {h['card_status']}")
    if h["status"] == handoffs.ANSWERED:
        _echo(f"  answered {h['answered_at']} by {h['answered_by']}: {h['resolution']} — {h['note']}")
    for title, rows, columns in (
        ("Lock tickets", data["lock_tickets"], [("number", "ticket"), ("card", "card"), ("lock_type", "type"),
                                                ("reason", "reason"), ("created_at", "at")]),
        ("Reissue requests", data["reissue_requests"], [("number", "ack"), ("card", "card"), ("created_at", "at")]),
        ("Notifications", data["notifications"], [("id", "id"), ("kind", "kind"), ("channel", "via"),
                                                  ("to", "to"), ("status", "status"), ("sent_at", "sent")]),
    ):
        _echo(f"\n{title}")
        _table(rows, columns, "  (none)")


@handoffs_cli.command("resolve")
@click.argument("handoff_id", metavar="ID", type=int)
@operator_option()
@click.option("--reactivate", is_flag=True, help="Reactivate the card (inactive -> active).")
@click.option("--reject", is_flag=True, help="Refuse the request; the card stays as it is.")
@click.option("--note", required=True, metavar="TEXT", help="What was decided and why (kept with the hand-off).")
@reported
def handoffs_resolve_command(handoff_id: int, operator: str, reactivate: bool, reject: bool, note: str) -> None:
    """Answer hand-off ID: --reactivate the card or --reject the request, with a --note. Once only; the customer
    gets an SMS of the outcome."""
    # Answering is once-only: a slip that names both must not be settled by the order of the flags.
    if reactivate == reject:
        raise click.UsageError("choose exactly one of --reactivate or --reject")
    resolution = handoffs.REACTIVATED if reactivate else handoffs.REJECTED
    with _service().store.unit_of_work() as uow:
        answered = handoffs.resolve(uow, handoff_id, operator, resolution, note, zone=_zone())
    _echo(f"hand-off {handoff_id} answered by {operator}: {resolution}; card {answered['card']} is now "
               f"{answered['card_status']}")


# --- outbox ---------------------------------------------------------------------------------------------------

@outbox_cli.command("list")
@click.option("--status", type=click.Choice(outbox.STATUSES))
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@reported
def outbox_list_command(status: str | None, limit: int, as_json: bool) -> None:
    """Notifications, newest first (bodies are not shown: an unsent one may hold a code)."""
    with _service().store.unit_of_work() as uow:
        rows = outbox.list_messages(uow, status, limit, zone=_zone())
    if as_json:
        _echo_json(rows)
        return
    from notify import backlog

    queued = backlog(_service().store)
    _echo(f"backlog: {queued['queued']} not yet delivered"
               + (f", the oldest queued {queued['oldest_age_s']:.0f} s ago" if queued["oldest_age_s"] is not None else ""))
    _table(rows, [("id", "id"), ("created_at", "at"), ("kind", "kind"), ("channel", "via"), ("to", "to"),
                  ("status", "status"), ("attempts", "tries"), ("next_attempt_at", "next try"),
                  ("sent_at", "sent"), ("last_error", "last error")], "no messages")


@outbox_cli.command("deliver")
@operator_option(required=False)
@reported
def outbox_deliver_command(operator: str | None) -> None:
    """Send the messages that are due: new ones, and failed ones past their backoff. Never sends one twice."""
    service = _service()
    counts = outbox.deliver(service.store, service.notifier, operator or outbox.SYSTEM_ACTOR)
    _echo(f"outbox: {counts['due']} due, {counts['sent']} sent, {counts['failed']} failed")


@outbox_cli.command("relay")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--health-port", type=int, envvar="PORT", help="Serve /healthz and /healthz/outbox on this port "
              "(default: $PORT when set, as on Cloud Run).")
@reported
def outbox_relay_command(once: bool, health_port: int | None) -> None:
    """Deliver notices as they are queued, until SIGTERM or Ctrl-C (the outbox relay; README: Delivering notices)."""
    from notify import DeliveryError, relay

    service = _service()
    try:
        counts = relay.main(service.settings, service.store, once=once, health_port=health_port)
    except DeliveryError as exc:  # a backend that cannot work (NOTIFY_FILE unset …): say so, start nothing
        raise click.ClickException(f"the relay cannot start: {exc}") from None
    if counts is not None:
        click.echo(f"outbox: {counts['sent']} sent, {counts['failed']} failed, {counts['given_up']} given up")


@outbox_cli.command("requeue")
@click.argument("message_id", type=int)
@operator_option()
@reported
def outbox_requeue_command(message_id: int, operator: str) -> None:
    """Queue again a notice stuck in `sending` or failed for good — after checking with the gateway that it did not
    arrive (a message left in `sending` may have been sent)."""
    message = outbox.requeue(_service().store, message_id, operator)
    _echo(f"outbox: message {message['id']} is pending again; `outbox deliver` sends it")


# --- audit ----------------------------------------------------------------------------------------------------

def _audit_table(rows: list[dict[str, Any]], *, customer: bool = True) -> None:
    columns = [("at", "at"), ("actor", "actor"), ("action", "action"), ("customer", "customer"), ("card", "card"),
               ("change", "change")]
    _table([{**r, "change": "; ".join(r["changes"])} for r in rows],
           [c for c in columns if customer or c[0] != "customer"], "  (none)")


@audit_cli.command("list")
@click.option("--customer", "phone", metavar="PHONE", help="Only rows about this customer.")
@click.option("--actor", metavar="NAME", help="Only rows by this actor (an operator, or system:webhook …).")
@click.option("--since", metavar="DATE", help="From this local date or time (2026-11-23, 2026-11-23T09:30; "
              "LOCAL_TIMEZONE) or 7d back.")
@click.option("--action", metavar="ACTION", help="Only this action (card.locked, handoff.answered …; a wrong name "
              "lists the valid ones).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@reported
def audit_list_command(phone: str | None, actor: str | None, since: str | None, action: str | None, limit: int,
                       as_json: bool) -> None:
    """Audit rows, newest first."""
    from cardstore.models import utcnow

    since_at = values.since(since, utcnow(), _zone()) if since else None
    with _service().store.unit_of_work() as uow:
        rows = audit.list_events(uow, phone_e164=_phone(phone) if phone else None, actor=actor, since=since_at,
                                 action=action, limit=limit, zone=_zone())
    if as_json:
        _echo_json(rows)
        return
    _audit_table(rows)


def init_app(app: Flask) -> None:
    for group in (customers_cli, handoffs_cli, outbox_cli, audit_cli):
        app.cli.add_command(group)
