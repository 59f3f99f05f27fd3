"""`python -m agentpack build --out DIR [--webhooks flexible]` · `validate [DIR]` · `deploy --agent projects/…/agents/…`
· `apply-webhooks --agent …` (Google's component → the flexible endpoints) · `install --agent …` (ours, beside
the agent's own flows)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from agentpack.build import BuildError, build
from agentpack.settings import PackSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentpack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="assemble the agent in CX export layout: DIR and DIR.zip")
    b.add_argument("--out", required=True, type=Path, help="output folder (replaced); the zip is written beside it")
    b.add_argument("--webhook-url", help="webhook URL (default: AGENT_WEBHOOK_URL)")
    b.add_argument("--webhooks", choices=("standard", "flexible"), default="standard",
                   help="one standard webhook (default), or one flexible webhook per call named as its tag")
    b.add_argument("--flexible-base-url", help="base of /flexible/<tag> (default: AGENT_FLEXIBLE_BASE_URL, else "
                                                "the webhook URL without /webhook)")
    d = sub.add_parser("deploy", help="restore the agent from the built zip and point its webhook at the service")
    d.add_argument("--agent", required=True, help="projects/PROJECT/locations/LOCATION/agents/AGENT_ID")
    d.add_argument("--zip", type=Path, help="a zip from `build` (default: build one now)")
    d.add_argument("--webhook-url", help="webhook URL (default: AGENT_WEBHOOK_URL)")
    a = sub.add_parser("apply-webhooks", help="point the flexible webhooks of Google's Lock card component (found by "
                                              "name in the agent) at the service's /flexible/<tag> endpoints")
    a.add_argument("--agent", required=True, help="projects/PROJECT/locations/LOCATION/agents/AGENT_ID")
    a.add_argument("--webhook-url", help="the service's standard URL, …/webhook (default: AGENT_WEBHOOK_URL)")
    a.add_argument("--flexible-base-url", help="base of /flexible/<tag> (default: AGENT_FLEXIBLE_BASE_URL, else "
                                                "the webhook URL without /webhook)")
    i = sub.add_parser("install", help="add our Lock card and Authentication flows (with their intents, entity "
                                       "types and webhooks) to an agent that has other flows, keeping them")
    i.add_argument("--agent", required=True, help="projects/PROJECT/locations/LOCATION/agents/AGENT_ID")
    i.add_argument("--webhooks", choices=("standard", "flexible"), default="standard",
                   help="the build to install: one standard webhook (default) or the flexible ones")
    i.add_argument("--webhook-url", help="webhook URL (default: AGENT_WEBHOOK_URL)")
    i.add_argument("--flexible-base-url", help="base of /flexible/<tag> (default: AGENT_FLEXIBLE_BASE_URL)")
    i.add_argument("--replace-existing", action="store_true",
                   help="overwrite, in place, resources of our names that agentpack did not install")
    v = sub.add_parser("validate", help="strict parsing, references, tags and webhook parameters of an agent folder")
    v.add_argument("dir", nargs="?", type=Path, default=None, help="built folder (default: the sources)")
    args = parser.parse_args(argv)

    if args.command == "validate":
        from agentpack.build import REPO
        from agentpack.validate import validate_agent

        problems = validate_agent(args.dir or REPO)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) in {args.dir or 'the sources'}")
        return 1 if problems else 0

    try:
        settings = PackSettings.from_env(agent_webhook_url=args.webhook_url,
                                         agent_flexible_base_url=getattr(args, "flexible_base_url", None))
        if args.command == "build":
            zip_path = build(args.out, settings, webhooks=args.webhooks)
            print(f"built {args.out} and {zip_path}")
            return 0
        if args.command == "apply-webhooks":
            return _apply_webhooks(args.agent, settings)
        if args.command == "install":
            return _install(args, settings)
        from agentpack.deploy import DeployError, deploy

        with tempfile.TemporaryDirectory() as tmp:
            zip_path = args.zip or build(Path(tmp) / "agent", settings)
            try:
                # Only a URL someone gave replaces the one restored from the zip (never the placeholder).
                url = args.webhook_url or os.environ.get("AGENT_WEBHOOK_URL") or None
                done = deploy(args.agent, zip_path, webhook_uri=url)
            except DeployError as exc:
                print(f"agentpack: {exc}", file=sys.stderr)
                return 2
        print(f"restored {done.agent}; webhook {done.webhook} -> {done.webhook_uri}")
        return 0
    except (BuildError, ValueError) as exc:
        print(f"agentpack: {exc}", file=sys.stderr)
        return 2


def _apply_webhooks(agent: str, settings: PackSettings) -> int:
    from agentpack import apply
    from agentpack.deploy import DeployError
    from agentpack.flexible import base_url

    if "YOUR-WEBHOOK-HOST" in base_url(settings):
        print("agentpack: give the service's URL (--webhook-url, --flexible-base-url or AGENT_WEBHOOK_URL)",
              file=sys.stderr)
        return 2
    try:
        done = apply.apply_flexible_webhooks(agent, settings, apply.webhooks_client_for(agent))
    except DeployError as exc:
        print(f"agentpack: {exc}", file=sys.stderr)
        return 2
    for tag, name in done.updated:
        print(f"updated {tag} ({name})")
    for tag in done.absent:
        print(f"not in the agent (left alone): {tag}")
    return 0


def _install(args: argparse.Namespace, settings: PackSettings) -> int:
    from agentpack import install
    from agentpack.deploy import DeployError
    from agentpack.flexible import base_url

    if "YOUR-WEBHOOK-HOST" in (base_url(settings) if args.webhooks == "flexible" else settings.agent_webhook_url):
        print("agentpack: give the service's URL (--webhook-url, --flexible-base-url or AGENT_WEBHOOK_URL)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp) / "agent"
        build(built, settings, webhooks=args.webhooks)
        try:
            done = install.install(args.agent, built, install.clients_for(args.agent),
                                   replace_existing=args.replace_existing)
        except DeployError as exc:
            print(f"agentpack: {exc}", file=sys.stderr)
            return 2
    print(f"installed into {done.agent} ({', '.join(done.languages)})")
    for label, items in (("created", done.created), ("updated", done.updated), ("deleted", done.deleted)):
        for item in items:
            print(f"{label} {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
