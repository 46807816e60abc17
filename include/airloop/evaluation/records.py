"""Decision records: JSON files that say what a run compared, decided and why."""

from __future__ import annotations

import json
from pathlib import Path


def write_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, default=str))
