"""Notifications: outbox rows leave by SMS or e-mail through the gateways the settings name, sent by the relay.

A row is written in the transaction that caused it (a code sent, a card locked); the webhook never waits on a
gateway. The outbox relay (notify.relay, `flask --app main outbox relay`) claims due rows and delivers them
(notify.delivery) through a backend (notify.backends), each attempt within an overall deadline (notify.deadline).
"""
from notify.backends import Backend, DeliveryError, backend_for
from notify.delivery import BACKOFF_BASE_S, MAX_ATTEMPTS, Notifier, backlog

__all__ = ["BACKOFF_BASE_S", "MAX_ATTEMPTS", "Backend", "DeliveryError", "Notifier", "backend_for", "backlog"]
