"""Files that wait somewhere to be taken once (batch scoring's inputs, labels), and where each
goes once it has been.

A location is a local folder or object storage (`s3://...`, `file://...`, read through
Airflow's ObjectStoragePath). Files matching the pattern that have not changed for
`settle` seconds are pending; dot-names are still being written. An object is copied into a
local `incoming` folder to be read (an object that changes meanwhile waits for later).

Taken files are moved, never deleted: into a folder beside them (`retire`), under a name
not taken there (`name.1`, `name.2`, ...), so a file landed again under the same name never
overwrites the one kept.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PendingFile:
    """One file to take: the local file read, and the object it was copied from, if any."""

    name: str
    local: Path
    # The object's path in `store` (an ObjectStoragePath's filesystem); None: a local file.
    remote: str | None = None
    store: Any = None


def is_object_storage(location: str) -> bool:
    return "://" in location


def pending_files(
    location: str, pattern: str, settle: float, incoming: Path, now: float | None = None
) -> list[PendingFile]:
    """The settled files in `location`, oldest name first (objects copied to `incoming`)."""
    from airloop.data.sources import settled_files

    now = time.time() if now is None else now
    if is_object_storage(location):
        return _fetch_objects(location, pattern, settle, now, incoming)
    return [PendingFile(p.name, p) for p in settled_files(Path(location).expanduser(), pattern, settle, now)]


def _fetch_objects(
    location: str, pattern: str, settle: float, now: float, incoming: Path
) -> list[PendingFile]:
    from airloop.data.sources import copy_object, is_settled, listed_objects, object_version, storage_path

    root = storage_path(location)
    found = []
    for info in listed_objects(root.fs, root.path, pattern):
        version = object_version(info)
        if not is_settled(version.mtime, settle, now):
            continue
        local = copy_object(root.fs, info["name"], version, incoming)
        if local is not None:
            found.append(PendingFile(local.name, local, info["name"], root.fs))
    return sorted(found, key=lambda f: f.name)


def retire(file: PendingFile, folder: str) -> str:
    """Move a taken file into `folder` beside it (an object: the object, in its store, and its
    local copy goes); its new path or URL."""
    if file.remote is None:
        return move_into(file.local, file.local.parent / folder)
    moved = move_object(file, folder)
    file.local.unlink(missing_ok=True)
    return moved


def move_into(path: Path, folder: Path) -> str:
    """Move `path` into `folder`, under a name not taken there (else `name.1`, ...)."""
    target = _free_name(folder / path.name, lambda name: Path(name).exists())
    folder.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target)
    return target


def move_object(file: PendingFile, folder: str) -> str:
    """Move the object into `folder` beside it in its store, as `move_into` moves a file; its URL."""
    assert file.remote is not None
    parent = file.remote.rstrip("/").rpartition("/")[0]
    file.store.makedirs(f"{parent}/{folder}", exist_ok=True)  # object stores need none; file:// does
    target = _free_name(f"{parent}/{folder}/{file.name}", file.store.exists)
    file.store.mv(file.remote, target)
    return str(file.store.unstrip_protocol(target))


def _free_name(target: Any, exists: Callable[[str], bool]) -> str:
    name, n = str(target), 0
    while exists(name if n == 0 else f"{name}.{n}"):
        n += 1
    return name if n == 0 else f"{name}.{n}"
