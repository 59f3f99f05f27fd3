"""Notifications: the gateways a notice can leave by — console and file (development), SMTP (e-mail, and SMS
through an e-mail-to-SMS gateway), and Twilio's Messages API (SMS over HTTPS).

Every backend's `send(message)` returns when the gateway has accepted the message, or raises DeliveryError saying
whether trying again may help (`permanent=False`) or not. Network backends end each attempt within
NOTIFY_DEADLINE_SECONDS (notify.deadline), connect and whole exchange included.
"""
from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import smtplib
import socket
import ssl
import sys
import urllib.parse
from email.message import EmailMessage
from typing import NamedTuple, Protocol, Union

from cardstore.models import OutboxMessage, utcnow
from notify.deadline import Deadline
from settings import Settings


class DeliveryError(Exception):
    """The gateway did not accept the message. `permanent`: it never will (a bad number), so do not retry."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason[:300])
        self.permanent = permanent


class Outgoing(NamedTuple):
    """A claimed outbox row as the relay hands it to a gateway: the columns a send reads (OutboxMessage's names), a
    plain tuple — an ORM object per notice cost the relay a fifth of its time, on the core beside the webhook's."""

    id: int
    customer_id: int | None
    kind: str
    channel: str
    to: str
    subject: str | None
    body: str
    redacted_body: str
    attempts: int
    created_at: dt.datetime
    expires_at: dt.datetime | None


# What a backend sends: a claimed row, or (tests, the console) the ORM object itself.
Message = Union[Outgoing, OutboxMessage]


class Backend(Protocol):
    def send(self, message: Message) -> None: ...


class ConsoleBackend:
    """Development only: writes the message to stderr, as a phone would show it."""

    def send(self, message: Message) -> None:
        print(f"[{message.channel} to {masked_recipient(message)}] {message.body}", file=sys.stderr, flush=True)


class FileBackend:
    """Appends one JSON object per message to a file (like Django's file mail backend); tests read codes there."""

    def __init__(self, path) -> None:
        if path is None:
            raise DeliveryError("NOTIFY_FILE is not set")
        self.path = path

    def send(self, message: Message) -> None:
        record = {"id": message.id, "kind": message.kind, "channel": message.channel, "to": message.to,
                  "subject": message.subject, "body": message.body, "at": utcnow().isoformat()}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        # One O_APPEND write per message: whole lines even with several relay threads or processes appending, and
        # no text-file object per message (the relay runs on the core beside the webhook's; issue 15).
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            if os.write(fd, line) != len(line):  # a full disk: the line is cut; the relay tries again later
                raise DeliveryError("short write to NOTIFY_FILE")
        finally:
            os.close(fd)


class _DeadlineSMTP(smtplib.SMTP):
    """smtplib's client, with its connection (and SMTPS handshake) bounded by the attempt's deadline."""

    def __init__(self, deadline: Deadline, tls: ssl.SSLContext | None) -> None:
        self._deadline = deadline
        self._tls = tls
        super().__init__(timeout=deadline.seconds)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), self._deadline.remaining(), self.source_address)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=host)
        return sock


# SMTP replies that say "this message will never be accepted" (RFC 5321 5yz), except the 53x family: those are our
# own authentication or TLS set-up, which an operator can fix without the notice being lost.
def _smtp_permanent(code: int) -> bool:
    return 500 <= code < 600 and not 530 <= code < 540


class SmtpBackend:
    """E-mail through a real SMTP server; SMS through an e-mail-to-SMS gateway domain when one is set."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def send(self, message: Message) -> None:
        if message.channel == "sms":
            if not self.s.smtp_sms_domain:
                raise DeliveryError("no SMS route: SMTP_SMS_DOMAIN is not set")
            to = f"{message.to.lstrip('+')}@{self.s.smtp_sms_domain}"
        else:
            to = message.to
        mail = EmailMessage()
        mail["From"] = self.s.smtp_from
        mail["To"] = to
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        smtp = None
        with Deadline(self.s.notify_deadline_seconds, lambda: smtp.sock if smtp else None) as deadline:
            try:
                smtp = _DeadlineSMTP(deadline, ssl.create_default_context() if self.s.smtp_ssl else None)
                with smtp:
                    smtp.connect(self.s.smtp_host, self.s.smtp_port)
                    if self.s.smtp_starttls:
                        smtp.starttls(context=ssl.create_default_context())
                    if self.s.smtp_user:
                        smtp.login(self.s.smtp_user, self.s.smtp_password.get_secret_value() if self.s.smtp_password else "")
                    smtp.send_message(mail)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                raise DeliveryError(f"SMTPRecipientsRefused: {codes}",
                                    permanent=all(_smtp_permanent(c) for c in codes)) from exc
            except smtplib.SMTPResponseException as exc:
                raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=_smtp_permanent(exc.smtp_code)) from exc
            except (OSError, smtplib.SMTPException) as exc:
                if deadline.passed:
                    raise DeliveryError(f"SMTP: no answer within {deadline.seconds:g} s "
                                        "(NOTIFY_DEADLINE_SECONDS)") from exc
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


# Twilio answers these HTTP statuses for problems of ours that an operator fixes (credentials, account, API base),
# not of the message: the notice stays queued for retry instead of being given up.
_TWILIO_RETRY_STATUSES = {401, 403, 404, 408, 409, 429}


class TwilioSms:
    """SMS through Twilio's Programmable Messaging REST API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).

    201 with a message SID means Twilio accepted (queued) it; 429 and 5xx are retried; any other 4xx is a
    problem with this message (an invalid or unsubscribed number: Twilio error 21211, 21610, …) and is given up,
    with Twilio's error code recorded.
    """

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        base = urllib.parse.urlsplit(settings.twilio_api_base)
        if base.scheme not in ("https", "http") or not base.hostname:
            raise DeliveryError("TWILIO_API_BASE is not an http(s) URL")
        self.base = base
        self.path = f"{base.path.rstrip('/')}/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json"
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
        self.auth = "Basic " + base64.b64encode(f"{settings.twilio_account_sid}:{token}".encode()).decode("ascii")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.base.scheme == "https":
            return http.client.HTTPSConnection(self.base.hostname, self.base.port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=timeout)

    def send(self, message: Message) -> None:
        if message.channel != "sms":
            raise DeliveryError("Twilio sends SMS only", permanent=True)
        sender = self.s.twilio_from or ""
        form = {"To": message.to, "Body": message.body,
                ("MessagingServiceSid" if sender.startswith("MG") else "From"): sender}
        headers = {"Authorization": self.auth, "Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json", "User-Agent": "lockcard-outbox-relay"}
        conn = self._connection(self.s.notify_deadline_seconds)
        with Deadline(self.s.notify_deadline_seconds, lambda: conn.sock) as deadline:
            try:
                conn.timeout = deadline.remaining()
                conn.request("POST", self.path, urllib.parse.urlencode(form), headers)
                response = conn.getresponse()
                status = response.status
                data = response.read(65536)
            except (OSError, http.client.HTTPException) as exc:
                if deadline.passed:
                    raise DeliveryError(f"Twilio: no answer within {deadline.seconds:g} s "
                                        "(NOTIFY_DEADLINE_SECONDS)") from exc
                raise DeliveryError(f"Twilio: {type(exc).__name__}: {exc}") from exc
            finally:
                conn.close()
        if 200 <= status < 300:
            return
        try:
            error = json.loads(data)
            code = error.get("code") if isinstance(error, dict) else None
        except ValueError:
            code = None
        # The code names the problem (twilio.com/docs/api/errors/<code>); Twilio's text can quote the number.
        reason = f"Twilio HTTP {status}" + (f" error {code}" if code else "")
        raise DeliveryError(reason, permanent=status < 500 and status not in _TWILIO_RETRY_STATUSES)


class Router:
    """SMS to the SMS provider when one is set, everything else to NOTIFY_BACKEND."""

    def __init__(self, default: Backend, sms: Backend | None = None) -> None:
        self.default = default
        self.sms = sms

    def send(self, message: Message) -> None:
        (self.sms if message.channel == "sms" and self.sms is not None else self.default).send(message)


def backend_for(settings: Settings) -> Backend:
    """The backend the settings name; a setting that cannot work is an error here, at start-up."""
    if settings.notify_backend == "file":
        default: Backend = FileBackend(settings.notify_file)
    elif settings.notify_backend == "smtp":
        default = SmtpBackend(settings)
    else:
        default = ConsoleBackend()
    return Router(default, TwilioSms(settings) if settings.sms_provider == "twilio" else None)


def masked_recipient(message: Message) -> str:
    from contact import mask_email, mask_phone

    return mask_email(message.to) if message.channel == "email" else mask_phone(message.to)
