"""Data files the tests read, kept in the repository (see `mesos-1.12/README.md`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MESOS_1_12 = Path(__file__).resolve().parent / "mesos-1.12"


def recording(name: str) -> Any:
    """A recorded Mesos 1.12 exchange, parsed from JSON."""
    return json.loads((MESOS_1_12 / name).read_text())
