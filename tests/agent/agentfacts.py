"""Facts the agent checks share: where the sources are."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
