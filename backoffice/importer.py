"""`customers import`: existing customers from a spreadsheet (003), one row per card, merged by phone number (002).

Three steps. Decode: UTF-8 with or without BOM, or Shift_JIS (CP932, what Japanese Excel writes), detected and
reported, never guessed silently; anything else is refused before a row is read. Check: every row on its own
(phone parsed with `phonenumbers`, exactly four digits, known vendor and status, zip code), then against the
earlier rows of the same number. Apply: customers in batches, each batch with its audit rows in one
transaction; what is already in the store is left as it is, so a re-run changes nothing.

A row never changes a card's status (locks are the webhook's, reactivation is `handoffs resolve`'s) and never
overwrites a customer's name, e-mail or zip code unless `update_existing` is asked for. Messages name the line
and the column, never the value: a file can hold what must not reach a terminal (a full card number).
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator

from sqlalchemy import JSON, insert, select, text
from sqlalchemy.exc import IntegrityError

from backoffice.errors import BadInput
from safetext import has_controls
from cardstore.models import CARD_STATUSES, AuditEvent, Card, Customer, utcnow
from cardstore.uow import Store, relax_deadline
from contact import cost_risk, e164, parse_phone
from handlers.values import zip_code

COLUMNS = ("phone_number", "name", "email", "zip_code", "card_last4", "card_vendor", "card_status")
BATCH_CUSTOMERS = 1000
ENCODINGS = ("utf-8", "utf-8-sig", "cp932", "shift_jis", "euc_jp")
MAX_NAME = 200  # customers.name
MAX_EMAIL = 254  # customers.email

# Brand names as the voice agent says them; keys are casefolded with spaces, dots and hyphens removed.
VENDORS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "master": "Mastercard",
    "americanexpress": "American Express",
    "amex": "American Express",
    "jcb": "JCB",
    "dinersclub": "Diners Club",
    "diners": "Diners Club",
    "discover": "Discover",
    "unionpay": "UnionPay",
    "chinaunionpay": "UnionPay",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INSIDE_LATIN_WORD = re.compile(r"[A-Za-z][^\x00-\x7f]+[A-Za-z]|[A-Za-z][\uff61-\uff9f]|[\uff61-\uff9f][A-Za-z]")
_DIGIT_RUN = re.compile(r"\d[\d \-]{11,}\d")


# --- decoding ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the codec used
    how: str  # "given", "BOM", "detected"


def _japanese(ch: str) -> bool:
    """Could this character be in a Japanese spreadsheet's text? (What Shift_JIS decoding may produce.)"""
    o = ord(ch)
    return (
        0x3000 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF
        or 0xFF01 <= o <= 0xFF9F or 0xFFE0 <= o <= 0xFFE5 or 0x2010 <= o <= 0x2312 or 0x2460 <= o <= 0x24FF
        or 0x2500 <= o <= 0x26FF or 0x0391 <= o <= 0x0451 or ch in "§¨°±´¶×÷¢£¬"
    )


def _decodes(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _where(data: bytes, encoding: str) -> str:
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line}"
    return "somewhere"


def decode(data: bytes, encoding: str | None = None) -> Decoded:
    """The file's text. `encoding` forces a codec; otherwise UTF-8 (BOM or not) or Shift_JIS/CP932, or BadInput."""
    if encoding is not None:
        if encoding not in ENCODINGS:
            raise BadInput(f"--encoding must be one of {', '.join(ENCODINGS)}")
        text = _decodes(data, encoding)
        if text is None:
            raise BadInput(f"the file is not valid {encoding} ({_where(data, encoding)})")
        return Decoded(text.removeprefix("\ufeff"), encoding, "given")
    if not data.strip():
        raise BadInput("the file is empty")
    if data.startswith(codecs.BOM_UTF8):
        text = _decodes(data[len(codecs.BOM_UTF8):], "utf-8")
        if text is None:
            raise BadInput(f"the file starts with a UTF-8 BOM but is not valid UTF-8 ({_where(data, 'utf-8-sig')})")
        return Decoded(text, "utf-8-sig", "BOM")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4096]:
        raise BadInput("the file is UTF-16 (Excel's \"Unicode text\"), not CSV: save it as \"CSV UTF-8\" "
                       "or \"CSV (comma delimited)\"")
    text = _decodes(data, "utf-8")
    if text is not None:
        return Decoded(text, "utf-8", "detected")
    _refuse_mixed(data)
    sjis = _decodes(data, "cp932")
    if sjis is None:
        raise BadInput(f"cannot read the file: it is neither UTF-8 ({_where(data, 'utf-8')}) nor Shift_JIS/CP932 "
                       f"({_where(data, 'cp932')}); save it as \"CSV UTF-8\" or pass --encoding")
    odd = next((ch for ch in sjis if ord(ch) > 0x7F and not _japanese(ch)), None)
    if odd is not None:
        raise BadInput("the file is not UTF-8, and read as Shift_JIS it holds characters no Japanese spreadsheet "
                       f"writes (U+{ord(odd):04X}, {_where_char(sjis, odd)}): it is probably in another encoding. "
                       "Save it as \"CSV UTF-8\" or pass --encoding")
    # Latin-1 accents decode as Shift_JIS too ("Béatrice" -> "B騁rice"): Japanese text does not put kana or kanji
    # inside a Latin word.
    inside = _INSIDE_LATIN_WORD.search(sjis)
    if inside is not None:
        raise BadInput("the file is not UTF-8, and read as Shift_JIS it has Japanese characters inside Latin words "
                       f"({_where_char(sjis, inside.group(0))}): it is probably in another encoding (Latin-1?). "
                       "Save it as \"CSV UTF-8\" or pass --encoding")
    euc = _decodes(data, "euc_jp")
    if euc is not None and euc != sjis and all(ord(ch) <= 0x7F or _japanese(ch) for ch in euc):
        raise BadInput("the file reads as Shift_JIS and as EUC-JP, with different text: pass --encoding cp932 "
                       "or --encoding euc_jp to say which it is")
    return Decoded(sjis, "cp932", "detected")


def _refuse_mixed(data: bytes) -> None:
    """BadInput if some lines are UTF-8 text and others are not: two spreadsheets pasted together. Read as one
    encoding, the other lines' names would be stored garbled, so the line where the encoding changes is named."""
    first: tuple[int, bool] | None = None  # (line, is UTF-8) of the first line with non-ASCII bytes
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        utf8 = _decodes(line, "utf-8") is not None
        if first is None:
            first = (number, utf8)
        elif utf8 != first[1]:
            kinds = ("UTF-8", "not UTF-8 (Shift_JIS?)")
            raise BadInput(f"line {number}: the file mixes encodings: line {first[0]} is "
                           f"{kinds[0] if first[1] else kinds[1]}, line {number} is "
                           f"{kinds[0] if utf8 else kinds[1]}; nothing was imported. Save the whole file once "
                           "as \"CSV UTF-8\"")


def _where_char(text: str, ch: str) -> str:
    return f"line {text.count(chr(10), 0, text.index(ch)) + 1}"


# --- checking ---------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """A row's values, canonical; a field that did not check is None (and the row has reasons)."""

    line: int
    phone: str | None
    name: str | None
    email: str | None
    zip_code: str | None
    last4: str | None
    vendor: str | None
    status: str | None


@dataclass
class Rejection:
    line: int
    reasons: list[str]


@functools.lru_cache(maxsize=1024)
def vendor_key(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    return re.sub(r"[\s.\-_]", "", text)


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _looks_like_card_number(value: str) -> bool:
    if value.isascii() and not _DIGIT_RUN.search(value):
        return False  # the common case, without normalising
    for run in _DIGIT_RUN.findall(unicodedata.normalize("NFKC", value)):
        digits = re.sub(r"\D", "", run)
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return True
    return False


@functools.lru_cache(maxsize=65536)
def _zip(value: str) -> str | None:
    try:
        return zip_code(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _word(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


class RowChecker:
    """Checks one row's fields; phone numbers are parsed once per distinct spelling (a customer has many rows)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._phones: dict[str, str | None] = {}

    def phone(self, raw: str) -> str | None:
        if raw not in self._phones:
            try:
                self._phones[raw] = e164(parse_phone(raw, self.region))
            except ValueError:
                self._phones[raw] = None
        return self._phones[raw]

    def check(self, line: int, f: dict[str, str]) -> tuple[Row, list[str]]:
        """The row's values (None where a field is wrong) and every reason it is wrong (empty: a good row)."""
        reasons: list[str] = []
        # Only the free-text columns: the others are checked against forms no card number can pass.
        for column in ("name", "email"):
            if _looks_like_card_number(f[column]):
                reasons.append(f"{column} holds what looks like a full card number (not stored, not shown)")
        raw_phone = f["phone_number"].strip()
        phone = self.phone(raw_phone) if raw_phone else None
        if not raw_phone:
            reasons.append("phone_number is empty")
        elif phone is None:
            reasons.append("phone_number is not a phone number")
        elif cost_risk(phone):
            # Codes are texted to this number: a premium-rate range would bill the bank for each (SMS pumping).
            reasons.append(f"phone_number is a {cost_risk(phone)} number: no customer's phone, codes cannot go there")
        name: str | None = f["name"].strip()
        wrong_name = len(reasons)
        if not name:
            reasons.append("name is empty")
        elif len(name) > MAX_NAME:
            reasons.append(f"name is longer than {MAX_NAME} characters")
        elif any(0xE000 <= ord(ch) <= 0xF8FF for ch in name):
            reasons.append("name holds a user-defined character (外字) no other system can show")
        elif not name.isprintable():
            reasons.append("name holds control characters")
        if len(reasons) > wrong_name:
            name = None
        email: str | None = f["email"].strip()
        email = (email if email.isascii() else unicodedata.normalize("NFKC", email).strip()) or None
        if email is not None and has_controls(email):
            reasons.append("email holds control characters")
            email = None
        elif email is not None and (len(email) > MAX_EMAIL or not _EMAIL.match(email)):
            reasons.append("email is not an e-mail address")
            email = None
        zip_ = _zip(f["zip_code"])
        if zip_ is None:
            reasons.append("zip_code must be 3 to 10 digits (hyphens allowed)")
        last4 = f["card_last4"].strip()
        if not last4.isascii():
            last4 = unicodedata.normalize("NFKC", last4).strip()
        if not (last4.isascii() and last4.isdigit()):
            reasons.append("card_last4 must be 4 digits")
        elif len(last4) < 4:
            reasons.append(f"card_last4 must be exactly 4 digits, not {len(last4)} (a spreadsheet drops leading "
                           "zeros: format the column as text)")
        elif len(last4) > 4:
            reasons.append("card_last4 must be the last 4 digits only, never more (the value is not shown)")
        vendor = VENDORS.get(vendor_key(f["card_vendor"]))
        if vendor is None:
            reasons.append("card_vendor is not a known vendor (" + ", ".join(sorted(set(VENDORS.values()))) + ")")
        status = _word(f["card_status"])
        if status not in CARD_STATUSES:
            reasons.append("card_status must be one of " + ", ".join(CARD_STATUSES))
        good_last4 = last4 if last4.isascii() and last4.isdigit() and len(last4) == 4 else None
        return Row(line, phone, name, email, zip_, good_last4, vendor,
                   status if status in CARD_STATUSES else None), reasons


def read_rows(text: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header (as written) and (first line number, fields) for every non-blank record after it."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BadInput("the file is empty") from None
    except csv.Error as exc:
        raise BadInput(f"line 1: not CSV ({exc})") from None

    def records() -> Iterator[tuple[int, list[str]]]:
        last = reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise BadInput(f"line {last + 1}: not CSV ({exc}); nothing was imported") from None
            start, last = last + 1, reader.line_num
            if fields and any(v.strip() for v in fields):
                yield start, fields

    return header, records()


def column_index(header: list[str]) -> tuple[dict[str, int], list[str]]:
    """Where each required column is, and the extra columns (ignored); BadInput if one is missing or doubled."""
    names = [unicodedata.normalize("NFKC", h).strip().casefold() for h in header]
    doubled = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    if doubled:
        raise BadInput(f"the header names {', '.join(doubled)} more than once")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        hint = " (the header looks tab-separated: save the file as comma-separated CSV)" if "\t" in "".join(header) else ""
        raise BadInput(f"missing column(s): {', '.join(missing)}{hint}; the header must be "
                       f"{','.join(COLUMNS)} (in any order)")
    return {c: names.index(c) for c in COLUMNS}, [h for h, n in zip(header, names) if n not in COLUMNS]


# --- merging and applying ------------------------------------------------------------------------------------------

@dataclass
class Group:
    """The rows of one phone number: the customer's fields from its first row, and its cards."""

    first: Row
    email: str | None
    rows: list[Row] = field(default_factory=list)
    cards: dict[str, Row] = field(default_factory=dict)


@dataclass
class Report:
    filename: str
    encoding: str
    encoding_how: str
    ignored_columns: list[str] = field(default_factory=list)
    read: int = 0
    imported: int = 0
    merged: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    customers_created: int = 0
    customers_updated: int = 0
    cards_added: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.filename, "encoding": self.encoding, "encoding_how": self.encoding_how,
            "ignored_columns": self.ignored_columns, "dry_run": self.dry_run,
            "rows": {"read": self.read, "imported": self.imported, "merged": self.merged,
                     "unchanged": self.unchanged, "rejected": len(self.rejected)},
            "customers_created": self.customers_created, "customers_updated": self.customers_updated,
            "cards_added": self.cards_added,
            "rejections": [{"line": r.line, "reasons": r.reasons} for r in sorted(self.rejected, key=lambda r: r.line)],
        }


Progress = Callable[[str, int], ContextManager[Any]]


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def no_progress(label: str, total: int) -> Iterator[_NoBar]:
    yield _NoBar()


def check_file(data: bytes, *, region: str, filename: str = "-", encoding: str | None = None,
               progress: Progress = no_progress) -> tuple[Report, dict[str, Group]]:
    """Decode and check every row, on its own and against the other rows of its phone number; touches no store.

    Returns the report (rows read, every rejected row with all its reasons) and the good rows by phone number.
    A file that cannot be read as CSV with the required columns raises BadInput.
    """
    decoded = decode(data, encoding)
    header, records = read_rows(decoded.text)
    index, ignored = column_index(header)
    report = Report(filename, decoded.encoding, decoded.how, ignored)
    checker = RowChecker(region)
    checked: list[tuple[Row, list[str]]] = []
    width = len(header)
    with progress("checking rows", decoded.text.count("\n")) as bar:
        for line, fields in records:
            report.read += 1
            bar.update(1)
            if len(fields) != width:
                report.rejected.append(Rejection(line, [f"has {len(fields)} fields, the header has {width}"]))
                continue
            checked.append(checker.check(line, {c: fields[i] for c, i in index.items()}))
    _conflicts(checked)
    groups: dict[str, Group] = {}
    for row, reasons in checked:
        if reasons:
            report.rejected.append(Rejection(row.line, reasons))
        else:
            _join(groups, row)
    return report, groups


def _lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:5])) + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
    return f"line {shown}" if len(lines) == 1 else f"lines {shown}"


def _conflicts(checked: list[tuple[Row, list[str]]]) -> None:
    """Rows of one phone number that disagree (name, zip code, e-mail; a card's vendor or status) each get a
    reason naming the other lines — both sides, whatever else is wrong with them: which one is right is for the
    operator to say, not for the file's order."""
    by_phone: dict[str, list[tuple[Row, list[str]]]] = {}
    for row, reasons in checked:
        if row.phone is not None:
            by_phone.setdefault(row.phone, []).append((row, reasons))
    for rows in by_phone.values():
        if len(rows) < 2:
            continue
        for name in ("name", "zip_code", "email"):
            _disagreements(rows, name, lambda r, n=name: getattr(r, n),
                           f"{name} differs from {{}}, which has the same phone number")
        by_card: dict[str, list[tuple[Row, list[str]]]] = {}
        for row, reasons in rows:
            if row.last4 is not None:
                by_card.setdefault(row.last4, []).append((row, reasons))
        for same in by_card.values():
            _disagreements(same, "card", lambda r: (r.vendor, r.status) if r.vendor and r.status else None,
                           "the same card is on {} with another vendor or status")


def _disagreements(rows: list[tuple[Row, list[str]]], _name: str, value: Callable[[Row], Any], reason: str) -> None:
    lines: dict[Any, list[int]] = {}
    for row, _ in rows:
        v = value(row)
        if v is not None:
            lines.setdefault(v, []).append(row.line)
    if len(lines) < 2:
        return
    for row, reasons in rows:
        mine = value(row)
        if mine is not None:
            reasons.append(reason.format(_lines(sorted(n for v, ns in lines.items() if v != mine for n in ns))))


def import_csv(store: Store, data: bytes, *, operator: str, region: str, filename: str = "-",
               encoding: str | None = None, update_existing: bool = False, dry_run: bool = False,
               batch_customers: int = BATCH_CUSTOMERS, progress: Progress = no_progress,
               now: dt.datetime | None = None) -> Report:
    """Check every row, then apply the good ones in batches; returns what happened to each row.

    A file that cannot be read as CSV with the required columns raises BadInput and changes nothing.
    """
    report, groups = check_file(data, region=region, filename=filename, encoding=encoding, progress=progress)
    report.dry_run = dry_run
    now = now or utcnow()
    batch: list[Group] = []
    ref = {"file": filename, "sha256": hashlib.sha256(data).hexdigest()[:16]}
    with progress("importing", sum(len(g.rows) for g in groups.values())) as bar:
        for group in groups.values():
            batch.append(group)
            if len(batch) >= batch_customers:
                _apply(store, batch, report, operator, update_existing, dry_run, now, ref)
                bar.update(sum(len(g.rows) for g in batch))
                batch = []
        if batch:
            _apply(store, batch, report, operator, update_existing, dry_run, now, ref)
            bar.update(sum(len(g.rows) for g in batch))
    if not dry_run:
        with store.unit_of_work() as uow:
            summary = report.as_dict()
            uow.repo.audit(operator, "import.completed", after={
                **ref, "encoding": report.encoding, "rows": summary["rows"],
                "customers_created": report.customers_created, "customers_updated": report.customers_updated,
                "cards_added": report.cards_added})
            uow.commit()
    return report


def _join(groups: dict[str, Group], row: Row) -> None:
    """Add a good row to its phone number's group (rows that disagree were rejected on both sides before)."""
    assert row.phone is not None and row.last4 is not None
    group = groups.get(row.phone)
    if group is None:
        groups[row.phone] = Group(first=row, email=row.email, rows=[row], cards={row.last4: row})
        return
    group.rows.append(row)
    if row.last4 in group.cards:
        return  # a repeated row: nothing new, counted as unchanged
    if group.email is None:
        group.email = row.email
    group.cards[row.last4] = row


def _fields(names: list[str]) -> str:
    return f"{', '.join(names)} {'differs' if len(names) == 1 else 'differ'}"


def _apply(store: Store, batch: list[Group], report: Report, operator: str, update_existing: bool, dry_run: bool,
           now: dt.datetime, ref: dict[str, str]) -> None:
    # A concurrent import (or webhook) may insert the same customer first: retry the batch once, reading it back.
    for attempt in (1, 2):
        trial = Report(report.filename, report.encoding, report.encoding_how)
        try:
            with store.unit_of_work() as uow:
                _apply_batch(uow, batch, trial, operator, update_existing, now, ref)
                if not dry_run:
                    uow.commit()
            break
        except IntegrityError:
            if attempt == 2:
                raise
    for name in ("imported", "merged", "unchanged", "customers_created", "customers_updated", "cards_added"):
        setattr(report, name, getattr(report, name) + getattr(trial, name))
    report.rejected.extend(trial.rejected)


def _apply_batch(uow, batch: list[Group], report: Report, operator: str, update_existing: bool, now: dt.datetime,
                 ref: dict[str, str]) -> None:
    # Core rows, not ORM objects: a re-run of a 100k-row file reads every customer and card back.
    conn = uow.session.connection()
    relax_timeouts(conn)
    customers_t, cards_t = Customer.__table__, Card.__table__
    existing = {c.phone_e164: c for c in conn.execute(
        select(customers_t).where(customers_t.c.phone_e164.in_([g.first.phone for g in batch])))}
    cards: dict[int, dict[str, Any]] = {}
    if existing:
        for card in conn.execute(select(cards_t.c.customer_id, cards_t.c.last4, cards_t.c.vendor, cards_t.c.status)
                                 .where(cards_t.c.customer_id.in_([c.id for c in existing.values()]))):
            cards.setdefault(card.customer_id, {})[card.last4] = card

    new_groups = [g for g in batch if g.first.phone not in existing]
    created: dict[str, int] = {}
    if new_groups:
        rows = [{"phone_e164": g.first.phone, "name": g.first.name, "email": g.email, "zip_code": g.first.zip_code,
                 "created_at": now} for g in new_groups]
        # Plain executemany on the connection: ORM bulk inserts with RETURNING cost minutes at 100k rows.
        _insert_many(conn, customers_t, rows)
        created = dict(conn.execute(select(Customer.phone_e164, Customer.id)
                                    .where(Customer.phone_e164.in_([g.first.phone for g in new_groups]))).all())
    new_cards: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for group in batch:
        phone = group.first.phone
        customer = existing.get(phone)
        if customer is None:
            customer_id = created[phone]
            added = _new_cards(group, {}, customer_id, now, new_cards)
            report.customers_created += 1
            report.imported += 1  # its first row; the others add cards to it, or repeat a row
            report.merged += len(added) - 1
            report.unchanged += len(group.rows) - len(added)
            report.cards_added += len(added)
            audits.append(_audit_row(operator, "customer.imported", customer_id, now, ref, group, added, []))
            continue
        if customer.deleted_at is not None:
            report.rejected.extend(Rejection(r.line, ["the customer with this phone number is deleted: purge it "
                                                      "(customers purge) before importing it again"]) for r in group.rows)
            continue
        known = cards.get(customer.id, {})
        rejected = _card_conflicts(group, known)
        report.rejected.extend(rejected)
        bad_lines = {r.line for r in rejected}
        changes = _field_changes(customer, group)
        if changes and not update_existing:
            report.rejected.extend(Rejection(r.line, [
                f"{_fields(changes)} from the store's for this customer: the store keeps its values "
                "(pass --update-existing to overwrite them)"]) for r in group.rows if r.line not in bad_lines)
            continue
        filled = ["email"] if customer.email is None and group.email is not None else []
        if changes or filled:
            wanted = {"name": group.first.name, "zip_code": group.first.zip_code, "email": group.email}
            conn.execute(customers_t.update().where(customers_t.c.id == customer.id)
                         .values({name: wanted[name] for name in changes + filled}))
        added = _new_cards(group, known, customer.id, now, new_cards, skip=bad_lines)
        good = [r for r in group.rows if r.line not in bad_lines]
        adding = {a["line"] for a in added}
        touched = bool(changes or filled)
        for i, row in enumerate(good):
            if row.line in adding or (touched and i == 0):
                report.merged += 1
            else:
                report.unchanged += 1
        report.cards_added += len(added)
        report.customers_updated += int(touched)
        if added or touched:
            audits.append(_audit_row(operator, "customer.merged", customer.id, now, ref, group, added, changes + filled))
    if new_cards:
        _insert_many(conn, cards_t, [{k: v for k, v in c.items() if k != "line"} for c in new_cards])
    if audits:
        _insert_many(conn, AuditEvent.__table__, audits)


def _insert_many(conn, table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows: COPY on PostgreSQL (about twice as fast as executemany), executemany elsewhere.

    Every row has the same keys; the columns they leave out get their Python-side defaults first.
    """
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    defaults = {c.name: c.default.arg for c in table.columns
                if c.name not in rows[0] and c.default is not None and c.default.is_scalar}
    names = [*rows[0], *defaults]
    as_json = {c.name for c in table.columns if isinstance(c.type, JSON)}
    cursor = conn.connection.driver_connection.cursor()
    columns = ", ".join(f'"{n}"' for n in names)
    with cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for row in rows:
            values = {**defaults, **row}
            copy.write_row([json.dumps(values[n], ensure_ascii=False) if n in as_json and values[n] is not None
                            else values[n] for n in names])


def relax_timeouts(conn) -> None:
    """The store's sub-second timeouts are for webhook turns; a batch of an import may take longer."""
    if conn.dialect.name == "postgresql":
        relax_deadline(conn, 120)
        conn.execute(text("SET LOCAL statement_timeout = '120s'"))


def _new_cards(group: Group, known: dict[str, Any], customer_id: int, now: dt.datetime, out: list[dict[str, Any]],
               skip: set[int] = frozenset()) -> list[dict[str, Any]]:
    added = []
    for last4, row in group.cards.items():
        if last4 in known or row.line in skip:
            continue
        card = {"customer_id": customer_id, "last4": last4, "vendor": row.vendor, "status": row.status,
                "updated_at": now, "line": row.line}
        out.append(card)
        added.append(card)
    return added


def _card_conflicts(group: Group, known: dict[str, Any]) -> list[Rejection]:
    out = []
    for row in group.rows:
        card = known.get(row.last4)
        if card is None:
            continue
        reasons = []
        if vendor_key(card.vendor) != vendor_key(row.vendor):
            reasons.append("card_vendor differs from the store's for this card")
        if card.status != row.status:
            reasons.append(f"card_status differs from the store's ({card.status}): an import never changes a card's "
                           "status (locks are the webhook's, reactivation is handoffs resolve)")
        if reasons:
            out.append(Rejection(row.line, reasons))
    return out


def _field_changes(customer: Any, group: Group) -> list[str]:
    changes = []
    if customer.name != group.first.name:
        changes.append("name")
    if customer.zip_code != group.first.zip_code:
        changes.append("zip_code")
    if group.email is not None and customer.email is not None and customer.email != group.email:
        changes.append("email")
    return changes


def _audit_row(operator: str, action: str, customer_id: int, now: dt.datetime, ref: dict[str, str], group: Group,
               added: list[dict[str, Any]], fields: list[str]) -> dict[str, Any]:
    # Which fields changed, never their values: the audit trail outlives a purge and holds no personal data.
    after: dict[str, Any] = {**ref, "lines": [r.line for r in group.rows],
                             "cards_added": [{"last4": c["last4"], "vendor": c["vendor"], "status": c["status"]}
                                             for c in added]}
    if fields:
        after["fields_updated"] = fields
    return {"at": now, "actor": operator, "action": action, "customer_id": customer_id, "card_id": None,
            "session": None, "before": None, "after": after}
