"""Generated stores for the benchmark: customers, cards, and the per-request prerequisites of each tag.

Everything goes through the card store's own door (`Store.unit_of_work()` and `Repository.insert_rows`), in
chunks of executemany, so 1M customers take seconds, not hours. The numbering is a pure function of the
customer's index, so the wrk Lua script (`bench/wrk/cx.lua`) computes the same phone number and card:

- customer i: id i+1, phone 090-iiii-iiii (E.164 +8190iiiiiiii), 1 + i % 4 cards; readers of a large store are
  spread over it with as many cards each as a small store's (`spread_reader`);
- card j of customer i: last four `(i + 2500 j) % 10000`, all active;
- session names: `<prefix>-<i>` under `SESSION_ROOT`; a read session is verified once, a lock session just
  before its run (the step-up window is 10 minutes), an OTP session gets a pending challenge.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Iterator

from cardstore import migrate
from cardstore.models import ACTIVE, Card, Customer, OtpChallenge, VerifiedSession, utcnow
from cardstore.uow import Store
from handlers.authentication import code_hash

SESSION_ROOT = "projects/bench/locations/global/agents/lockcard/sessions/"
BENCH_OTP_KEY = "bench-otp-key-not-a-secret-0123456789abcdef"
SENT_CODE = "482913"  # the code "sent"; the benchmark types 000000, always wrong
VENDORS = ("Visa", "MasterCard", "American Express", "JCB")
NAMES = ("佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健太")
CHUNK = 2_000  # rows per round trip: well inside the store's 1 s client-side deadline on PostgreSQL


def phone_e164(i: int) -> str:
    return f"+8190{i:08d}"


def phone_national(i: int) -> str:
    return f"090{i:08d}"


def card_count(i: int) -> int:
    return 1 + i % 4


def last4(i: int, j: int = 0) -> str:
    return f"{(i + 2500 * j) % 10000:04d}"


def spread_reader(k: int, stride: int) -> int:
    """The k-th of readers spread `stride` apart over a large store, with as many cards as customer k has
    (card_count depends on i % 4), so a large store's readers are drawn like a small one's (bench/wrk/cx.lua: the
    same formula)."""
    base = k * stride
    return base + (k - base) % 4


def session_path(prefix: str, i: int) -> str:
    return f"{SESSION_ROOT}{prefix}-{i}"


def _chunks(start: int, stop: int, size: int = CHUNK) -> Iterator[range]:
    for lo in range(start, stop, size):
        yield range(lo, min(lo + size, stop))


def create_schema(url: str) -> None:
    migrate.upgrade(url)


def add_customers(store: Store, start: int, stop: int) -> None:
    """Customers [start, stop) with their 1–4 cards, committed chunk by chunk."""
    now = utcnow()
    for chunk in _chunks(start, stop):
        with store.unit_of_work() as uow:
            uow.repo.insert_rows(Customer, [
                {"id": i + 1, "phone_e164": phone_e164(i), "name": NAMES[i % 4], "email": f"c{i}@example.jp",
                 "zip_code": f"{100_0000 + i % 900_0000}", "created_at": now, "otp_failures": 0}
                for i in chunk])
            uow.repo.insert_rows(Card, [
                {"customer_id": i + 1, "last4": last4(i, j), "vendor": VENDORS[j], "status": ACTIVE, "updated_at": now}
                for i in chunk for j in range(card_count(i))])
            uow.commit()


def verify_sessions(store: Store, prefix: str, customers: range | list[int], *, at: dt.datetime | None = None) -> None:
    """Record that session `<prefix>-<i>` verified customer i by a code (what verify_otp writes on success: the
    number as the benchmark's bodies send it, national digits, and the customer's E.164 number)."""
    at = at or utcnow()
    items = list(customers)
    for lo in range(0, len(items), CHUNK):
        with store.unit_of_work() as uow:
            uow.repo.insert_rows(VerifiedSession, [
                {"session": session_path(prefix, i), "customer_id": i + 1, "verified_at": at,
                 "phone_text": phone_national(i), "phone_e164": phone_e164(i)}
                for i in items[lo:lo + CHUNK]])
            uow.commit()


def open_challenges(store: Store, prefix: str, customers: range) -> None:
    """A pending code (sent just now, by SMS) in session `<prefix>-<i>` for each customer i (what send_otp writes)."""
    now = utcnow()
    for chunk in _chunks(customers.start, customers.stop):
        with store.unit_of_work() as uow:
            uow.repo.insert_rows(OtpChallenge, [
                {"customer_id": i + 1, "session": session_path(prefix, i), "channel": "sms",
                 "code_hash": code_hash(BENCH_OTP_KEY, i + 1, session_path(prefix, i), SENT_CODE),
                 "created_at": now, "expires_at": now + dt.timedelta(minutes=5), "attempts": 0, "max_attempts": 3,
                 "status": "pending"}
                for i in chunk])
            uow.commit()


@dataclass
class Layout:
    """Which customers serve which requests in a store built by `build`."""

    readers: int  # customers 0..readers-1, each with a verified session `read-<i>`
    pool_start: int  # customers from here on are spent one per write request (lock, verify_otp)
    pool_size: int


def build(url: str, *, readers: int, pool: int) -> Layout:
    """A fresh schema with `readers` verified readers and `pool` more customers for the write tags."""
    create_schema(url)
    store = Store(url)
    try:
        add_customers(store, 0, readers + pool)
        verify_sessions(store, "read", range(readers))
    finally:
        store.dispose()
    return Layout(readers=readers, pool_start=readers, pool_size=pool)


def timed(label: str, fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result
