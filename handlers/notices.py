"""What the bank tells the customer by SMS or e-mail, in the conversation's language, and the outbox row for it."""
from __future__ import annotations

import datetime as dt

from cardstore.models import Customer, OutboxMessage
from cardstore.repository import Repository

_TEXTS = {
    "otp": {
        "ja": ("認証コード", "認証コードは {code} です。有効期限は{minutes}分です。このコードを他人に教えないでください。"),
        "en": ("Your verification code", "Your verification code is {code}. It expires in {minutes} minutes. Never share it."),
    },
    "lock_ticket": {
        "ja": ("カードロックのお知らせ", "末尾 {last4} のカードをロックしました。リクエスト番号は {number} です。"),
        "en": ("Your card is locked", "Your card ending {last4} is locked. Your request number is {number}."),
    },
    "reissue_ticket": {
        "ja": ("カード再発行のお知らせ", "末尾 {last4} のカードの再発行を受け付けました。リクエスト番号は {number} です。{days}営業日以内に登録住所へお届けします。"),
        "en": ("Your new card is on its way", "We have ordered a new card to replace the one ending {last4}. Your request number is {number}. It will reach your registered address within {days} business days."),
    },
    "handoff_reactivated": {
        "ja": ("カード利用再開のお知らせ", "末尾 {last4} のカードの利用再開のご依頼を承認し、カードをご利用いただけるようにしました。"),
        "en": ("Your card is active again", "We have reactivated your card ending {last4}, as you asked."),
    },
    "handoff_rejected": {
        "ja": ("カード利用再開のご依頼について", "末尾 {last4} のカードの利用再開のご依頼は、お受けできませんでした。詳しくはお問い合わせください。"),
        "en": ("About your reactivation request", "We could not reactivate your card ending {last4}. Please contact us for details."),
    },
}
REDACTED_CODE = "******"


def _lang(language: str) -> str:
    return "en" if language.lower().startswith("en") else "ja"


def enqueue(
    repo: Repository, customer: Customer, kind: str, channel: str, language: str, *, secret: str | None = None,
    expires_at: dt.datetime | None = None, **values: object
) -> OutboxMessage:
    """Queue a notice to the customer's registered phone (sms) or e-mail; `secret` is redacted once sent; a notice
    with `expires_at` (a code) is given up rather than delivered after that time. An SMS for a number of a
    premium-rate, shared-cost, toll-free or UAN range is queued and given up by the relay, never sent (notify)."""
    to = customer.email if channel == "email" else customer.phone_e164
    assert to is not None, "callers check the channel is registered"
    return repo.enqueue(OutboxMessage(**notice(customer.id, to, kind, channel, language, secret=secret,
                                              expires_at=expires_at, **values)))


def notice(
    customer_id: int, to: str, kind: str, channel: str, language: str, *, secret: str | None = None,
    expires_at: dt.datetime | None = None, **values: object
) -> dict[str, object]:
    """The outbox row's content for a notice to `to` (OutboxMessage's columns but its delivery state). Whether `to`
    may be texted is the relay's check, made before every SMS it sends (notify.delivery): the webhook's lock does
    not pay phonenumbers' typing of a never-seen number (issue 15), and no path can queue around it."""
    subject, template = _TEXTS[kind][_lang(language)]
    body = template.format(code=secret or "", **values)
    redacted = template.format(code=REDACTED_CODE, **values) if secret else body
    return {"customer_id": customer_id, "kind": kind, "channel": channel, "to": to, "subject": subject, "body": body,
            "redacted_body": redacted, "expires_at": expires_at}
