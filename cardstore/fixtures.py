"""Load the demo customers (fixtures/customers.json) into a store, idempotently."""
from __future__ import annotations

import json
from pathlib import Path

from cardstore.models import Base, Card, Customer
from cardstore.uow import Store
from contact import e164, parse_phone

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "customers.json"
ACTOR = "system:fixtures"


def load(store: Store, *, path: Path = FIXTURES, region: str = "JP") -> dict[str, int]:
    """Insert the fixture customers and cards that are not there yet; existing rows are left as they are."""
    with store.unit_of_work() as uow:
        added = _load_rows(uow, path, region)
        uow.commit()
    return added


def _load_rows(uow, path: Path, region: str) -> dict[str, int]:
    """The fixture rows not there yet, added in the caller's transaction."""
    data = json.loads(path.read_text(encoding="utf-8"))
    added = {"customers": 0, "cards": 0}
    repo = uow.repo
    for row in data["customers"]:
        phone = e164(parse_phone(row["phone_number"], region))
        customer = repo.customer_by_phone(phone, include_deleted=True)
        if customer is None:
            customer = repo.add(Customer(phone_e164=phone, name=row["name"], email=row["email"],
                                         zip_code=row["zip_code"]))
            repo.flush()
            repo.audit(ACTOR, "customer.created", customer=customer, after={"cards": len(row["cards"])})
            added["customers"] += 1
        for c in row["cards"]:
            if repo.card(customer.id, c["last4"]) is None:
                card = repo.add(Card(customer_id=customer.id, last4=c["last4"], vendor=c["vendor"],
                                     status=c["status"]))
                repo.flush()
                repo.audit(ACTOR, "card.created", card=card, after={"status": card.status, "vendor": card.vendor})
                added["cards"] += 1
    return added


def reset(store: Store, *, path: Path = FIXTURES, region: str = "JP") -> dict[str, int]:
    """Delete every row (children first) and load the fixtures, in one transaction: a store as `load` first made it.

    For development and test runs (the simulator's `run-tests` replays each test case on a fresh store); the CLI
    refuses it in production.
    """
    with store.unit_of_work() as uow:
        for table in reversed(Base.metadata.sorted_tables):
            uow.session.execute(table.delete())
        added = _load_rows(uow, path, region)
        uow.repo.audit(ACTOR, "store.reset", after=added)
        uow.commit()
    return added
