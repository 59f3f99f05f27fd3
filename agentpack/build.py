"""Assemble the CX export layout from the sources at the repository root, plus agent.json and the webhook."""
from __future__ import annotations

import json
import shutil
import uuid
import zipfile
from pathlib import Path

from agentpack.settings import PackSettings
from agentpack.voice import VoiceError, voice_flows

REPO = Path(__file__).resolve().parent.parent
# Source folder -> folder name in the CX export (entity types are `entityTypes/` there).
SOURCES = {"flows": "flows", "entities": "entityTypes", "intents": "intents", "testCases": "testCases"}
WEBHOOK_DISPLAY_NAME = "prebuilt_components_lock_card_webhook"
DEFAULT_LANGUAGE = "ja"
LANGUAGES = ("ja", "en")
START_FLOW = "Default Start Flow"
_NS = uuid.UUID("6f1f4b7e-3a52-4c1e-9a55-0c6b2b1a7d10")


class BuildError(Exception):
    """The sources or the output folder are not what a build needs."""


def agent_json(settings: PackSettings) -> dict:
    """agent.json: Japanese first, English too; DTMF on for the phone; the start flow greets the caller."""
    return {
        "description": "Lock card: authenticate the card holder, lock a card temporarily or permanently, "
                       "reissue it, and hand reactivation to a person.",
        "defaultLanguageCode": DEFAULT_LANGUAGE,
        "supportedLanguageCodes": [code for code in LANGUAGES if code != DEFAULT_LANGUAGE],
        "timeZone": settings.agent_time_zone,
        "startFlow": START_FLOW,
        "enableStackdriverLogging": True,
        "enableSpellCorrection": False,
        "speechToTextSettings": {"enableSpeechAdaptation": True},
        "advancedSettings": {
            "loggingSettings": {"enableStackdriverLogging": True, "enableInteractionLogging": False},
            # Agent-wide DTMF; the card-number, code and postal-code parameters set their own digit counts.
            "dtmfSettings": {"enabled": True, "maxDigits": 11, "finishDigit": "#"},
        },
    }


def web_service_auth(settings: PackSettings) -> dict:
    """How CX authenticates to the service, as genericWebService fields (standard and flexible webhooks alike)."""
    if settings.agent_webhook_auth == "service_agent":
        return {"serviceAgentAuth": "ID_TOKEN"}
    if settings.agent_webhook_auth == "basic":
        return {"username": settings.agent_webhook_username, "password": settings.agent_webhook_password}
    if settings.agent_webhook_auth == "header":
        return {"requestHeaders": [{"key": k, "value": v} for k, v in settings.agent_webhook_headers.items()]}
    return {}


def webhook_json(settings: PackSettings) -> dict:
    """The one standard webhook every page calls, told apart by tag."""
    service: dict = {"uri": settings.agent_webhook_url, "webhookType": "STANDARD", "httpMethod": "POST"}
    service.update(web_service_auth(settings))
    return {
        "name": str(uuid.uuid5(_NS, "webhook/" + WEBHOOK_DISPLAY_NAME)),
        "displayName": WEBHOOK_DISPLAY_NAME,
        "genericWebService": service,
        "timeout": {"seconds": settings.agent_webhook_timeout_s},
    }


WEBHOOK_KINDS = ("standard", "flexible")


def build(out: Path | str, settings: PackSettings | None = None, source: Path | str = REPO,
          webhooks: str = "standard") -> Path:
    """Write the agent in CX export layout into `out` (replaced) and `out`.zip; return the zip's path.

    `webhooks="standard"`: one standard webhook, every page calls it by tag. `"flexible"`: one FLEXIBLE webhook per
    call, named as its tag (`agentpack.flexible`), and the pages call those; test cases that inject an upstream
    `auth_level` are left out (an upstream credential cannot be injected into a stored test case)."""
    if webhooks not in WEBHOOK_KINDS:
        raise BuildError(f"webhooks must be one of {', '.join(WEBHOOK_KINDS)}, not {webhooks!r}")
    settings = settings or PackSettings.from_env()
    out, source = Path(out), Path(source)
    if out.resolve() in (source.resolve(), *[(source / s).resolve() for s in SOURCES]):
        raise BuildError(f"refusing to build into the sources: {out}")
    missing = [s for s in ("flows", "entities", "intents") if not (source / s).is_dir()]
    if missing:
        raise BuildError(f"sources missing under {source}: {', '.join(missing)}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for src, dst in SOURCES.items():
        if (source / src).is_dir():
            shutil.copytree(source / src, out / dst, ignore=shutil.ignore_patterns(".*"))
    try:
        voice_flows(out / "flows")  # the sources are text only; what a caller hears is generated here
    except VoiceError as exc:
        raise BuildError(f"voice: {exc}") from exc
    _write(out / "agent.json", agent_json(settings))
    if webhooks == "flexible":
        from agentpack import flexible

        try:
            flexible.use_flexible_webhooks(out / "flows", WEBHOOK_DISPLAY_NAME)
        except ValueError as exc:
            raise BuildError(str(exc)) from exc
        for name, hook in flexible.webhooks_for(settings):
            _write(out / "webhooks" / name, hook)
        for case in sorted((out / "testCases").glob("*.json")):
            turns = json.loads(case.read_text(encoding="utf-8")).get("testCaseConversationTurns") or [{}]
            if "auth_level" in (turns[0].get("userInput") or {}).get("injectedParameters", {}):
                case.unlink()
    else:
        _write(out / "webhooks" / f"{WEBHOOK_DISPLAY_NAME}.json", webhook_json(settings))

    zip_path = out.with_name(out.name + ".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(out.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(out).as_posix())
    return zip_path


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
