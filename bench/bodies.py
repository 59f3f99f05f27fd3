"""The CX WebhookRequests the benchmark sends, one template per tag, shared by Python and the wrk Lua script.

A body is what CX sends on that page of the prebuilt flows: session parameters (numbers as doubles, as CX
sends them), the current page's form parameters, intent info, the telephony payload with the caller ID.
Placeholders `${name}` are filled per request — by `body()` here, by `bench/wrk/cx.lua` under wrk:
`${i}` customer index, `${n}` request counter, `${phone}` national number, `${caller}` E.164 caller ID,
`${card}` last four as a double (`42.0` for card 0042), `${session}` the session path.
"""
from __future__ import annotations

import json

from bench import seed

TAGS = {
    "get_card_details": "prebuilt_components_account_services:get_card_details",
    "validate_card": "prebuilt_components_lock_card:validate_card",
    "verify_otp": "prebuilt_components_authentication:verify_otp",
    "lock": "prebuilt_components_lock_card:lock_card_ticket_number",
}
# Which session a request runs in: a verified reader, a session with a pending code, a freshly verified locker.
PREFIX = {"get_card_details": "read", "validate_card": "read", "verify_otp": "otp", "lock": "lock"}
# A write needs a customer of its own per call (a fresh session and card, or a pending code), which only the full
# benchmark and bench.profile prepare; any reader may call a read again and again.
WRITES = ("verify_otp", "lock")
READS = tuple(short for short in TAGS if short not in WRITES)
AGENT = "projects/bench/locations/global/agents/lockcard"
WRONG_CODE = "000000"

_PAGES = {
    "get_card_details": ("Account services get card details", {}),
    "validate_card": ("Lock card collect card number", {"last_four_digit_of_card_number": "${card}"}),
    "verify_otp": ("Authentication collect code", {"otp_code": WRONG_CODE}),
    "lock": ("Lock card confirm lock", {"lock_type": "inactive", "lock_reason": "lost"}),
}
_SESSION_PARAMS = {
    "get_card_details": {"auth_level": 1.0, "otp_verified": True},
    "validate_card": {"auth_level": 1.0, "otp_verified": True, "card_count": 2.0,
                      "last_four_digit_of_card_number": "${card}"},
    "verify_otp": {"auth_level": -1.0, "otp_channel": "sms", "otp_sent": True, "otp_code": WRONG_CODE},
    "lock": {"auth_level": 1.0, "otp_verified": True, "card_found": True, "card_status": "active",
             "last_four_digit_of_card_number": "${card}", "lock_type": "inactive", "lock_reason": "lost",
             "zip_code": "1000000", "card_vendor": "Visa"},
}


def template(short: str) -> str:
    """The JSON body of tag `short` with `${…}` placeholders (`${card}` unquoted: CX sends a double)."""
    display, form = _PAGES[short]
    params = {"phone_number": "${phone}", "caller_language": "ja", **_SESSION_PARAMS[short]}
    request = {
        "detectIntentResponseId": "${n}-4f6c-4b8e-9d2a-00000000${i}",
        "intentInfo": {"lastMatchedIntent": f"{AGENT}/intents/00000000-0000-0000-0000-000000000000",
                       "displayName": "small_talk.confirmation.yes", "confidence": 1.0},
        "pageInfo": {
            "currentPage": f"{AGENT}/flows/00000000-0000-0000-0000-000000000000/pages/{display.replace(' ', '_')}",
            "displayName": display,
            "formInfo": {"parameterInfo": [
                {"displayName": k, "required": True, "state": "FILLED", "value": v, "justCollected": True}
                for k, v in form.items()]},
        },
        "sessionInfo": {"session": "${session}", "parameters": params},
        "fulfillmentInfo": {"tag": TAGS[short]},
        "text": "はい、お願いします",
        "languageCode": "ja",
        "payload": {"telephony": {"caller_id": "${caller}"}},
    }
    return json.dumps(request, ensure_ascii=False).replace('"${card}"', "${card}")


def values(short: str, i: int, n: int = 0) -> dict[str, str]:
    national = seed.phone_national(i)
    return {"i": str(i), "n": str(n), "phone": national, "caller": "+81" + national[1:],
            "card": f"{int(seed.last4(i))}.0", "session": seed.session_path(PREFIX[short], i)}


def body(short: str, i: int, n: int = 0) -> bytes:
    """The request for customer i, as the Lua script would send it."""
    text = template(short)
    for name, value in values(short, i, n).items():
        text = text.replace("${" + name + "}", value)
    return text.encode()


def read_tags(parser, tags: list[str]) -> list[str]:
    """The read tags a command was asked for (both by default); an argparse error for any other name."""
    for short in tags:
        if short not in TAGS:
            parser.error(f"unknown tag {short!r} (choose from {', '.join(READS)})")
        if short not in READS:
            parser.error(f"{short} is a write: each call needs a customer of its own (python -m bench.profile)")
    return tags or list(READS)
