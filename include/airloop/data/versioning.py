"""Data versioning with DVC: a repository of its own under the state dir, pushed to a remote.

A file's DVC hash (md5 of its bytes) is its version: it travels to MLflow tags, and
`cached_file` turns it back into exactly those bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from airloop.paths import StatePaths

if TYPE_CHECKING:
    from dvc.repo import Repo


@contextlib.contextmanager
def open_repo(paths: StatePaths) -> Iterator[Repo]:
    """The DVC repository at paths.data, created (without git) with its remote on first use."""
    from dvc.repo import Repo

    paths.data.mkdir(parents=True, exist_ok=True)
    if not (paths.data / ".dvc").is_dir():
        Repo.init(str(paths.data), no_scm=True).close()
        with Repo(str(paths.data)) as repo, repo.config.edit() as conf:
            conf["remote"]["local"] = {"url": str(paths.dvc_remote)}
            conf["core"]["remote"] = "local"
            conf["core"]["analytics"] = False
    with Repo(str(paths.data)) as repo:
        yield repo


def version_file(path: Path, paths: StatePaths) -> str:
    """Track `path` (inside paths.data) with DVC, push it to the remote, return its hash.

    Adding unchanged bytes again is a no-op that returns the same hash.
    """
    with open_repo(paths) as repo:
        (stage,) = repo.add(str(path))
        repo.push(targets=[stage.path])
        return str(stage.outs[0].hash_info.value)


def tracked_hash(path: Path) -> str:
    """The hash recorded in the `.dvc` file next to `path` (without opening the repository)."""
    import yaml

    meta = yaml.safe_load(Path(f"{path}.dvc").read_text())
    return str(meta["outs"][0]["md5"])


def cached_file(md5: str, paths: StatePaths) -> Path:
    """The bytes with this hash, from the local cache, fetched from the remote if missing."""
    with open_repo(paths) as repo:
        cached = Path(repo.cache.local.oid_to_path(md5))
        if not cached.exists():
            remote_copy = Path(repo.cloud.get_remote_odb().oid_to_path(md5))
            if not remote_copy.exists():
                raise FileNotFoundError(f"no data with DVC hash {md5} in the cache or the remote")
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(remote_copy.read_bytes())
        return cached


def checkout(md5: str, paths: StatePaths, target: Path) -> Path:
    """Write the bytes with this DVC hash to `target` (a file, or a folder to put `<md5>` in)."""
    import shutil

    source = cached_file(md5, paths)
    destination = target / md5 if target.is_dir() else target
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return destination
