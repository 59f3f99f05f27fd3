"""Real servers on loopback for tests: a free port, and an SMTP server (aiosmtpd) a test can bring up, take down,
or make refuse."""
from __future__ import annotations

import socket

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox(Message):
    """What a real SMTP server received; `refuse_with` makes it answer DATA with a temporary failure instead."""

    def __init__(self) -> None:
        super().__init__()
        self.mails: list = []
        self.refuse_with: str | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.refuse_with:
            return self.refuse_with
        return await super().handle_DATA(server, session, envelope)

    def handle_message(self, message) -> None:
        self.mails.append(message)


class SmtpServer:
    """A loopback SMTP server on a fixed port that a test can take down and bring back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def up(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class SilentServer:
    """A TCP server that accepts and then never answers ("stall"), or answers one byte at a time ("drip"): a
    gateway having a bad minute. `connections` counts the clients it took; `open` those still connected."""

    def __init__(self, mode: str = "stall", drip: bytes = b"220 smtp.bank.example ESMTP ready\r\n",
                 every_s: float = 0.3) -> None:
        import threading

        self.mode = mode
        self.drip, self.every_s = drip, every_s
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._clients.append(client)
            if self.mode == "drip":
                threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        for byte in self.drip * 100:
            if self._stop.wait(self.every_s):
                return
            try:
                client.send(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for c in self._clients:
            c.close()


class TwilioServer:
    """A loopback HTTP server speaking Twilio's Messages API (request and response shapes as documented at
    twilio.com/docs/messaging/api/message-resource): `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form
    fields To, From|MessagingServiceSid, Body, HTTP Basic auth AccountSid:AuthToken; 201 with the message resource,
    or an error body {code, message, more_info, status}.

    `mode`: "ok"; ("error", http_status, twilio_code); "stall" (holds the request, unanswered, until `release()`
    or the client hangs up); "drip" (a 201 one byte at a time). `received` is every request as parsed;
    `accepted` the bodies it answered 201 to a client still there to read it.
    """

    ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
    AUTH_TOKEN = "test-auth-token-0123456789"

    def __init__(self) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.mode: object = "ok"
        self.received: list[dict] = []
        self.accepted: list[dict] = []
        self.stalled = threading.Event()  # set while a request is held
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def settings(self, **overrides) -> dict:
        """The webhook settings that point SMS at this server."""
        return {"sms_provider": "twilio", "twilio_account_sid": self.ACCOUNT_SID, "twilio_auth_token": self.AUTH_TOKEN,
                "twilio_from": "+15005550006", "twilio_api_base": self.base, **overrides}

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        import base64
        import json
        import select
        import time
        import urllib.parse
        from http.server import BaseHTTPRequestHandler

        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict, *, drip: bool = False) -> bool:
                data = json.dumps(body).encode()
                head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                        "Connection: close\r\n\r\n").encode()
                try:
                    if drip:
                        for byte in head + data:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.2)
                    else:
                        self.wfile.write(head + data)
                        self.wfile.flush()
                except OSError:
                    return False
                return True

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                request = {"path": self.path, "auth": self.headers.get("Authorization"), "form": form,
                           "content_type": self.headers.get("Content-Type")}
                with gateway._lock:
                    gateway.received.append(request)
                expected_auth = "Basic " + base64.b64encode(
                    f"{gateway.ACCOUNT_SID}:{gateway.AUTH_TOKEN}".encode()).decode()
                if self.path != f"/2010-04-01/Accounts/{gateway.ACCOUNT_SID}/Messages.json":
                    self._answer(404, {"code": 20404, "message": "The requested resource was not found",
                                       "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})
                    return
                if request["auth"] != expected_auth:
                    self._answer(401, {"code": 20003, "message": "Authenticate",
                                       "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})
                    return
                mode = gateway.mode
                if mode == "stall":
                    gateway.stalled.set()
                    while not gateway._release.wait(0.05):
                        if self._client_gone():
                            gateway.stalled.clear()
                            return  # the client hung up: nothing was accepted
                    gateway.stalled.clear()
                    mode = gateway.mode if gateway.mode != "stall" else "ok"
                if isinstance(mode, tuple):
                    _, status, code = mode
                    self._answer(status, {"code": code, "message": f"error {code} for {form.get('To')}",
                                          "more_info": f"https://www.twilio.com/docs/errors/{code}",
                                          "status": status})
                    return
                resource = {"sid": "SM" + "%032x" % len(gateway.received), "account_sid": gateway.ACCOUNT_SID,
                            "to": form.get("To"), "from": form.get("From"), "body": form.get("Body"),
                            "status": "queued", "num_segments": "1", "direction": "outbound-api",
                            "api_version": "2010-04-01", "error_code": None, "error_message": None}
                if self._client_gone():
                    return
                if self._answer(201, resource, drip=mode == "drip") and mode != "drip":
                    with gateway._lock:
                        gateway.accepted.append(form)

        return Handler
