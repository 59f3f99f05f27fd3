"""The console's pages: one blueprint, thin views over the back-office services (backoffice/), POST-redirect-GET.

Every page is for a signed-in operator (`g.identity`, verified per request); changes that the seed reserves for
certain staff need a supervisor. No personal data in URLs: customers are found by a POSTed number and then named
by their internal id; imports by a random token. Page data passes through `safetext.escaped_all` before Jinja's
own HTML escaping, so a control character from a file or a note shows as `\\x1b`, never acts.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any, Callable
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError

from backoffice import audit, customers, handoffs, jobs, outbox, values
from backoffice.errors import BackofficeError, NotFound
from cardstore.models import utcnow
from console.forms import ActionForm, AnswerForm, AuditFilterForm, ImportForm, LanguageForm, SearchForm
from console.i18n import LANGUAGES, translate
from console.identity import Identities, NoRole, NotSignedIn
from safetext import escaped, escaped_all
from settings import Settings

log = logging.getLogger("lockcard.console")
bp = Blueprint("console", __name__, template_folder="templates", static_folder="static")
MAX_UPLOAD = 64 * 1024 * 1024  # a 100k-row spreadsheet export is ~10 MB
AUDIT_ROWS = 200


def configure(app: Flask, settings: Settings) -> None:
    """The session cookie (language and CSRF token only) and how the console knows who is signed in."""
    app.secret_key = settings.console_secret_key.get_secret_value()
    app.config.update(SESSION_COOKIE_NAME="console_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=settings.app_env == "production")
    app.extensions["console_identities"] = Identities(settings)


def _service():
    return current_app.extensions["lockcard"]


def _zone() -> ZoneInfo:
    return ZoneInfo(_service().settings.local_timezone)


def _lang() -> str:
    lang = session.get("lang", "ja")
    return lang if lang in LANGUAGES else "ja"


def t(key: str) -> str:
    return translate(key, _lang())


@bp.before_request
def sign_in():
    request.max_content_length = MAX_UPLOAD
    try:
        g.identity = current_app.extensions["console_identities"].of(request.headers)
    except NotSignedIn as exc:
        log.warning("console request refused: %s", exc)
        return _error(401, t("not_signed_in"))
    except NoRole as exc:
        log.warning("console request refused: %s", exc)
        return _error(403, t("not_allowed"))
    if request.method == "POST":
        current_app.extensions["console_csrf"].protect()  # CSRFError (400) when the token is missing or wrong
    return None


@bp.after_request
def headers(response: Response) -> Response:
    # Pages hold personal data: no caching, no framing, no referrer; scripts only from our own static folder.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = ("default-src 'self'; script-src 'self'; style-src 'self' "
                                                   "'unsafe-inline'; frame-ancestors 'none'; form-action 'self'")
    return response


@bp.errorhandler(CSRFError)
def csrf_refused(exc: CSRFError):
    return _error(400, f"CSRF: {exc.description}")


def _error(status: int, message: str):
    return render_template("console/error.html", message=escaped(message), t=t, lang=_lang(),
                           identity=getattr(g, "identity", None), language_form=LanguageForm()), status


def supervisor_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only a supervisor (CONSOLE_SUPERVISORS) gets past; others get 403 — the page does not show them the button."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not g.identity.supervisor:
            log.warning("console: a supervisor action was refused to an operator")
            return _error(403, t("not_allowed"))
        return view(*args, **kwargs)

    return wrapped


def render(template: str, **data: Any) -> str:
    """A page from escaped data; forms are passed as they are (WTForms escapes what it renders)."""
    forms = {k: v for k, v in data.items() if k.endswith("_form")}
    page = escaped_all({k: v for k, v in data.items() if not k.endswith("_form")})
    return render_template(template, t=t, lang=_lang(), identity=g.identity, age=_age,
                           language_form=LanguageForm(), **forms, **page)


def _age(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    if _lang() == "ja":
        return (f"{days}日" if days else "") + (f"{hours}時間" if hours or days else "") + f"{minutes}分"
    return (f"{days} d " if days else "") + (f"{hours} h " if hours or days else "") + f"{minutes} min"


def _failed(exc: BackofficeError) -> None:
    flash(str(exc), "error")


# --- language ---------------------------------------------------------------------------------------------------

@bp.post("/language")
def language():
    form = LanguageForm()
    if form.validate_on_submit() and form.lang.data in LANGUAGES:
        session["lang"] = form.lang.data
    return redirect(request.referrer if request.referrer and request.referrer.startswith(request.host_url)
                    else url_for(".queue"))


# --- hand-offs ----------------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    return redirect(url_for(".queue"))


@bp.get("/handoffs")
def queue():
    with _service().store.unit_of_work() as uow:
        rows = handoffs.list_handoffs(uow, zone=_zone())
    return render("console/queue.html", rows=rows)


@bp.get("/handoffs/<int:handoff_id>")
def handoff(handoff_id: int):
    try:
        with _service().store.unit_of_work() as uow:
            data = handoffs.show(uow, handoff_id, g.identity.email, zone=_zone())
    except NotFound:
        abort(404)
    return render("console/handoff.html", data=data, answer_form=AnswerForm())


@bp.post("/handoffs/<int:handoff_id>/answer")
def answer(handoff_id: int):
    form = AnswerForm()
    if not form.validate_on_submit():
        flash("; ".join(f"{k}: {', '.join(v)}" for k, v in form.errors.items()), "error")
        return redirect(url_for(".handoff", handoff_id=handoff_id))
    if form.resolution.data == handoffs.REACTIVATED and not g.identity.supervisor:
        log.warning("console: reactivation refused to an operator")
        return _error(403, t("supervisor_only"))
    service = _service()
    try:
        with service.store.unit_of_work() as uow:
            answered = handoffs.resolve(uow, handoff_id, g.identity.email, form.resolution.data, form.note.data,
                                        zone=_zone())
    except BackofficeError as exc:
        _failed(exc)
        return redirect(url_for(".queue"))
    if answered["outbox_id"] is not None:
        # As the webhook does after its commit: send now; a failure stays in the outbox for delivery to retry.
        try:
            service.notifier.deliver(service.store, [answered["outbox_id"]])
        except Exception:  # noqa: BLE001 - the answer is committed; the outbox keeps the message
            log.warning("console: the answer's SMS was not delivered now; it stays in the outbox")
    flash(t("answered_ok"), "ok")
    return redirect(url_for(".queue"))


# --- customers ----------------------------------------------------------------------------------------------------

@bp.route("/customers", methods=["GET", "POST"])
def customer_search():
    form = SearchForm()
    if form.validate_on_submit():
        try:
            phone = values.phone(form.phone.data, _service().settings.default_region)
            with _service().store.unit_of_work() as uow:
                customer_id = customers.find(uow, phone)
        except BackofficeError as exc:
            _failed(exc)
        else:
            return redirect(url_for(".customer", customer_id=customer_id))
    return render("console/customers.html", search_form=form)


@bp.get("/customers/<int:customer_id>")
def customer(customer_id: int):
    try:
        with _service().store.unit_of_work() as uow:
            data = customers.show(uow, customers.phone_of(uow, customer_id), viewer=g.identity.email,
                                  zone=_zone())
    except NotFound:
        abort(404)
    for message in data["notifications"]:
        message["requeueable"] = outbox.requeueable(message)
    return render("console/customer.html", data=data, action_form=ActionForm())


def _customer_action(customer_id: int, act: Callable[[Any, str], Any]):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with _service().store.unit_of_work() as uow:
            act(uow, customers.phone_of(uow, customer_id))
    except NotFound:
        abort(404)
    except BackofficeError as exc:
        _failed(exc)
    else:
        flash(t("done"), "ok")
    return redirect(url_for(".customer", customer_id=customer_id))


@bp.post("/customers/<int:customer_id>/delete")
@supervisor_required
def customer_delete(customer_id: int):
    return _customer_action(customer_id, lambda uow, phone: customers.delete_customer(uow, phone, g.identity.email))


@bp.post("/customers/<int:customer_id>/otp-enable")
@supervisor_required
def customer_otp_enable(customer_id: int):
    return _customer_action(customer_id, lambda uow, phone: customers.otp_enable(uow, phone, g.identity.email))


# --- outbox -----------------------------------------------------------------------------------------------------

@bp.get("/outbox")
def outbox_page():
    with _service().store.unit_of_work() as uow:
        counts = outbox.backlog(uow)
        rows = outbox.list_messages(uow, limit=200, zone=_zone())
    for message in rows:
        message["requeueable"] = outbox.requeueable(message)
    return render("console/outbox.html", counts=counts, rows=rows, action_form=ActionForm())


@bp.post("/outbox/<int:message_id>/requeue")
@supervisor_required
def outbox_requeue(message_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        outbox.requeue(_service().store, message_id, g.identity.email)
    except BackofficeError as exc:
        _failed(exc)
    else:
        flash(t("done"), "ok")
    back = request.form.get("back_to_customer", type=int)
    return redirect(url_for(".customer", customer_id=back) if back else url_for(".outbox_page"))


# --- audit trail ----------------------------------------------------------------------------------------------------

def _audit_rows(form: AuditFilterForm) -> list[dict[str, Any]]:
    settings, zone = _service().settings, _zone()
    phone = values.phone(form.phone.data, settings.default_region) if form.phone.data else None
    since = values.since(form.since.data.isoformat(), utcnow(), zone) if form.since.data else None
    until = (values.since((form.until.data + dt.timedelta(days=1)).isoformat(), utcnow(), zone)
             if form.until.data else None)
    with _service().store.unit_of_work() as uow:
        return audit.list_events(uow, phone_e164=phone, actor=(form.actor.data or "").strip().lower() or None,
                                 since=since, until=until, action=form.action.data or None, limit=AUDIT_ROWS,
                                 zone=zone)


@bp.route("/audit", methods=["GET", "POST"])
def audit_page():
    form = AuditFilterForm()
    rows: list[dict[str, Any]] = []
    try:
        if request.method == "POST":
            if form.validate_on_submit():
                rows = _audit_rows(form)
            else:
                flash("; ".join(f"{k}: {', '.join(v)}" for k, v in form.errors.items()), "error")
        else:
            with _service().store.unit_of_work() as uow:
                rows = audit.list_events(uow, limit=AUDIT_ROWS, zone=_zone())
    except BackofficeError as exc:
        _failed(exc)
    return render("console/audit.html", filter_form=form, rows=rows)


@bp.post("/audit/export")
def audit_export():
    form = AuditFilterForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        rows = _audit_rows(form)
    except BackofficeError as exc:
        _failed(exc)
        return redirect(url_for(".audit_page"))
    with _service().store.unit_of_work() as uow:
        uow.repo.audit(g.identity.email, "audit.exported", after={"rows": len(rows)})
        uow.commit()
    # A BOM so that Excel reads the CSV as UTF-8 (Japanese names), formula cells neutralised by to_csv.
    body = "\ufeff" + audit.to_csv(rows)
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": 'attachment; filename="audit.csv"'})


# --- import -------------------------------------------------------------------------------------------------------

def _background() -> bool:
    """Checks and imports run in a thread (the page polls their progress); tests may run them inline."""
    return current_app.config.get("CONSOLE_JOBS_IN_BACKGROUND", True)


@bp.route("/imports", methods=["GET", "POST"])
def imports():
    form = ImportForm()
    if form.validate_on_submit():
        upload = form.file.data
        name = (upload.filename or "upload.csv").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
        try:
            token = jobs.preview(_service().store, upload.read(), filename=name, actor=g.identity.email,
                                 region=_service().settings.default_region, background=_background())
        except BackofficeError as exc:
            _failed(exc)
        else:
            return redirect(url_for(".import_job", token=token))
    return render("console/imports.html", import_form=form)


@bp.get("/imports/<token>")
def import_job(token: str):
    try:
        job = jobs.status(_service().store, token)
    except NotFound:
        abort(404)
    return render("console/import_job.html", job=job, action_form=ActionForm())


@bp.get("/imports/<token>/progress")
def import_progress(token: str):
    try:
        return jsonify(jobs.progress(_service().store, token))
    except NotFound:
        abort(404)


@bp.post("/imports/<token>/start")
def import_start(token: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        jobs.start(_service().store, token, g.identity.email, region=_service().settings.default_region,
                   background=_background())
    except NotFound:
        abort(404)
    except BackofficeError as exc:
        _failed(exc)
    return redirect(url_for(".import_job", token=token))
