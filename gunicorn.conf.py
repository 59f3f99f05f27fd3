"""gunicorn reads this file from the working directory: `gunicorn main:app` checks the settings before it
starts, so a refused production configuration (settings.ProductionRefused) stops the deploy instead of
answering 503 to every call."""
import os
import sys

# The worker's heartbeat file is touched on every request loop: in memory, not on the container's overlay disk
# (gunicorn's FAQ, "Blocking os.fchmod"). Cloud Run and Linux hosts have /dev/shm.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def on_starting(server):
    from pydantic import ValidationError

    from settings import ProductionRefused, Settings
    from webhook.app import settings_problem

    try:
        Settings.from_env()
    except (ProductionRefused, ValidationError) as exc:
        print(f"lockcard: the service is misconfigured: {settings_problem(exc)}", file=sys.stderr)
        sys.exit(3)
