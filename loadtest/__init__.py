"""Concurrent load on PostgreSQL: worker processes racing lock / reissue on the same and on different cards, with
retries of the same request, then checks that the store explains itself (`python -m loadtest --help`).

Not part of the service: it drives the real webhook (the app factory and the HTTP edge, through the WSGI test
client in each worker process) against a database of its own, and reads the store afterwards.
"""
from loadtest.run import LoadReport, run

__all__ = ["LoadReport", "run"]
