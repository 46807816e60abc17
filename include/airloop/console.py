"""Plain-text tables for the CLI and the demo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Columns padded to their widest cell, a header and a rule."""
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    header = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    return "\n".join([header, rule, *("  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows)])
