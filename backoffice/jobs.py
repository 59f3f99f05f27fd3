"""Imports started from the console: preview a file, then import it in the background, its progress in the store.

The job row keeps the uploaded file only until the import ran, the preview (every bad row and why), the phase and
how far it is, and the result. A page reload, or another instance, reads the same row; the URL carries only the
job's random token.
"""
from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from typing import Any, Iterator

from sqlalchemy import select, update

from backoffice import importer
from backoffice.errors import BackofficeError, NotFound, Refused
from cardstore.models import ImportJob, utcnow
from cardstore.uow import Store

log = logging.getLogger("lockcard.backoffice")
CHECKING, PREVIEWED, RUNNING, DONE, FAILED = "checking", "previewed", "running", "done", "failed"
# How often progress is written: every this many rows (or sooner when a phase ends); the page polls it.
PROGRESS_EVERY_ROWS = 1000
MAX_FILENAME = 200
# A preview keeps this many bad rows (the page shows the first 1,000); the count is always whole.
PREVIEW_REJECTIONS = 10_000


def preview(store: Store, data: bytes, *, filename: str, actor: str, region: str, background: bool = False) -> str:
    """Keep the file for `start` and check it (every row, and rows of one number against each other).

    Returns the job's token. A file that cannot be read as CSV with the required columns raises BadInput at once
    and keeps nothing. The row check runs inline, or in a thread with `background` (a 100k-row file takes tens of
    seconds: the page shows its progress, status `checking`, then the preview).
    """
    decoded = importer.decode(data)
    header, _records = importer.read_rows(decoded.text)
    importer.column_index(header)
    token = secrets.token_urlsafe(24)
    filename = filename[:MAX_FILENAME]
    with store.unit_of_work() as uow:
        importer.relax_timeouts(uow.session.connection())  # a 100k-row file is megabytes to write
        uow.repo.add(ImportJob(token=token, actor=actor, filename=filename, status=CHECKING, phase="checking rows",
                               data=data, total=decoded.text.count("\n")))
        uow.commit()
    if background:
        threading.Thread(target=_check, args=(store, token, data, filename, actor, region), name="console-check",
                         daemon=True).start()
    else:
        _check(store, token, data, filename, actor, region)
    return token


def _check(store: Store, token: str, data: bytes, filename: str, actor: str, region: str) -> None:
    try:
        report, _groups = importer.check_file(data, region=region, filename=filename,
                                              progress=_StoreProgress(store, token))
    except BackofficeError as exc:
        values: dict[str, Any] = {"status": FAILED, "error": str(exc)[:500], "data": None}
    except Exception as exc:  # noqa: BLE001 - the page must say it failed, not spin for ever
        log.exception("console import check failed")
        values = {"status": FAILED, "error": f"the check failed ({type(exc).__name__})", "data": None}
    else:
        shown = report.as_dict()
        shown["rejections"] = shown["rejections"][:PREVIEW_REJECTIONS]
        values = {"status": PREVIEWED, "preview": shown, "total": report.read, "done": report.read}
    with store.unit_of_work() as uow:
        importer.relax_timeouts(uow.session.connection())
        uow.session.execute(update(ImportJob).where(ImportJob.token == token)
                            .values(updated_at=utcnow(), **values))
        if values["status"] == PREVIEWED:
            uow.repo.audit(actor, "import.previewed", after={"file": filename, "rows": values["total"],
                                                             "rejected": values["preview"]["rows"]["rejected"]})
        uow.commit()


def status(store: Store, token: str) -> dict[str, Any]:
    """The job as the console shows it (never the file itself)."""
    columns = (ImportJob.token, ImportJob.filename, ImportJob.actor, ImportJob.status, ImportJob.phase,
               ImportJob.total, ImportJob.done, ImportJob.preview, ImportJob.result, ImportJob.error)
    with store.unit_of_work() as uow:
        row = uow.session.execute(select(*columns).where(ImportJob.token == token)).one_or_none()
    if row is None:
        raise NotFound("no such import")
    return dict(row._mapping)


def progress(store: Store, token: str) -> dict[str, Any]:
    """Only how far it is: what the page polls, a few bytes per poll."""
    with store.unit_of_work() as uow:
        row = uow.session.execute(select(ImportJob.status, ImportJob.phase, ImportJob.total, ImportJob.done)
                                  .where(ImportJob.token == token)).one_or_none()
    if row is None:
        raise NotFound("no such import")
    return dict(row._mapping)


def start(store: Store, token: str, actor: str, *, region: str, background: bool = True) -> None:
    """Run a previewed import, once (a second click or another operator is refused), in a thread by default."""
    with store.unit_of_work() as uow:
        won = uow.session.execute(
            update(ImportJob).where(ImportJob.token == token, ImportJob.status == PREVIEWED)
            .values(status=RUNNING, phase="checking rows", done=0, updated_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount
        if won != 1:
            exists = uow.session.scalar(select(ImportJob.id).where(ImportJob.token == token))
            if exists is None:
                raise NotFound("no such import")
            raise Refused("this import was already started")
        filename = uow.session.scalar(select(ImportJob.filename).where(ImportJob.token == token))
        uow.repo.audit(actor, "import.started", after={"file": filename})
        uow.commit()
    if background:
        threading.Thread(target=run, args=(store, token, actor, region), name="console-import", daemon=True).start()
    else:
        run(store, token, actor, region)


def run(store: Store, token: str, actor: str, region: str) -> None:
    """The import itself; its progress and result are written to the job row. The file is dropped afterwards."""
    with store.unit_of_work() as uow:
        importer.relax_timeouts(uow.session.connection())
        job = uow.session.scalars(select(ImportJob).where(ImportJob.token == token)).one()
        data, filename = job.data or b"", job.filename
    try:
        report = importer.import_csv(store, data, operator=actor, region=region, filename=filename,
                                     progress=_StoreProgress(store, token))
        result = report.as_dict()
        result["rejections"] = result["rejections"][:PREVIEW_REJECTIONS]
        values: dict[str, Any] = {"status": DONE, "result": result}
    except BackofficeError as exc:
        values = {"status": FAILED, "error": str(exc)[:500]}
    except Exception as exc:  # noqa: BLE001 - the page must say it failed, not spin for ever
        log.exception("console import failed")
        values = {"status": FAILED, "error": f"the import failed ({type(exc).__name__}); batches already "
                                             "committed stay: import the file again to finish it"}
    with store.unit_of_work() as uow:
        importer.relax_timeouts(uow.session.connection())
        uow.session.execute(update(ImportJob).where(ImportJob.token == token)
                            .values(data=None, updated_at=utcnow(), **values))
        uow.commit()


class _StoreProgress:
    """importer's progress protocol (label, total) -> bar.update(n), written to the job row now and then."""

    def __init__(self, store: Store, token: str) -> None:
        self.store = store
        self.token = token

    @contextlib.contextmanager
    def __call__(self, label: str, total: int) -> Iterator[Any]:
        bar = _Bar(self, label, total)
        bar.write()
        yield bar
        bar.write(final=True)

    def save(self, phase: str, total: int, done: int) -> None:
        with self.store.unit_of_work() as uow:
            uow.session.execute(update(ImportJob).where(ImportJob.token == self.token)
                                .values(phase=phase, total=total, done=done, updated_at=utcnow()))
            uow.commit()


class _Bar:
    def __init__(self, progress: _StoreProgress, label: str, total: int) -> None:
        self.progress, self.label, self.total = progress, label, max(total, 1)
        self.done = 0
        self.written = 0

    def update(self, n: int) -> None:
        self.done += n
        if self.done - self.written >= PROGRESS_EVERY_ROWS:
            self.write()

    def write(self, final: bool = False) -> None:
        self.written = self.done
        self.progress.save(self.label, self.total, self.total if final else min(self.done, self.total))
