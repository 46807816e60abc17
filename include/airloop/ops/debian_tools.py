"""Binaries from Debian's packages that the project unpacks without root (`make prometheus`,
`make haproxy`: `apt-get download` and `dpkg -x` into .tools/<name>/ under the checkout)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from airloop.paths import PROJECT_ROOT

TOOLS = Path(".tools")


class ToolNotFound(FileNotFoundError):
    """No binary: not in its environment variable, not unpacked in .tools/, not on PATH."""


def tool_binary(name: str, env: str, unpacked: Path) -> Path:
    """$`env`, else the binary `make <name>` unpacked (`unpacked`, relative to the checkout),
    else `name` on PATH; ToolNotFound (naming `make <name>`) if none is there."""
    configured = os.environ.get(env)
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolNotFound(f"${env} is {configured}, not an executable file")
        return path
    local = PROJECT_ROOT / unpacked
    if local.is_file() and os.access(local, os.X_OK):
        return local
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise ToolNotFound(
        f"no {name} binary: run `make {name}` (it unpacks Debian's package into "
        f"{PROJECT_ROOT / TOOLS / name}), or set ${env} to one"
    )


def library_path(binary: Path) -> dict[str, str]:
    """The environment a binary unpacked under .tools/<name>/ runs in: the shared libraries
    unpacked beside it (packages the machine lacks) come first on LD_LIBRARY_PATH."""
    root = binary.parent.parent.parent  # .tools/<name>/usr/sbin/<binary>
    libraries = root / "usr" / "lib" / "x86_64-linux-gnu"
    if not libraries.is_dir():
        return dict(os.environ)
    existing = os.environ.get("LD_LIBRARY_PATH")
    return {**os.environ, "LD_LIBRARY_PATH": f"{libraries}:{existing}" if existing else str(libraries)}
