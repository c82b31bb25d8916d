"""The inbox and the content-addressed library behind it.

A file dropped in the inbox is hashed and moved to library/<media_id>/, where media_id comes from
its content: a re-upload is the same item, and a partition key never depends on a file name.
A sidecar <stem>.json beside the file may carry title, description and tags.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

ORIGIN_FILE = "origin.json"
MEDIA_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Admitted:
    media_id: str
    sha256: str
    path: Path
    source_uri: str


def sha256_of(path: Path) -> str:
    """Hash file contents; a symbolic link is hashed by its target text and never followed."""
    digest = hashlib.sha256()
    if path.is_symlink():
        digest.update(b"symlink:" + os.fsencode(os.readlink(path)))
        return digest.hexdigest()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_name(name: str) -> str:
    """A file name that is plain ASCII, no separators, no leading dot: safe in paths and URLs."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.encode("ascii", "replace").decode()).lstrip(".")
    return cleaned[:120] or "upload"


def inside(root: Path, candidate: Path) -> Path:
    """Resolve candidate and refuse anything that escapes root (symlinks, '..')."""
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PermissionError(f"path escapes the media root: {candidate}")
    return resolved


def _sidecar(path: Path) -> dict:
    meta_path = path.with_name(path.stem + ".json")
    if meta_path == path or not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return {}
    meta_path.unlink()
    return {k: meta[k] for k in ("title", "description", "tags") if k in meta}


def admit(inbox: Path, library: Path, min_age_s: float = 0.0) -> list[Admitted]:
    """Move settled inbox files into the library; return what was admitted (new or known)."""
    library.mkdir(parents=True, exist_ok=True)
    admitted = []
    now = time.time()
    for path in sorted(inbox.iterdir()) if inbox.is_dir() else []:
        if path.suffix == ".json" or not (path.is_file() or path.is_symlink()):
            continue
        if not path.is_symlink() and now - path.stat().st_mtime < min_age_s:
            continue  # still being written
        sha = sha256_of(path)
        media_id = sha[:16]
        target_dir = library / media_id
        source_uri = str(path)
        origin = {"source_uri": source_uri, "name": path.name, "sha256": sha, **_sidecar(path)}
        if target_dir.exists():
            path.unlink()  # identical bytes are already stored under this id
        else:
            target_dir.mkdir()
            shutil.move(str(path), target_dir / safe_name(path.name))
            (target_dir / ORIGIN_FILE).write_text(json.dumps(origin, ensure_ascii=True))
        admitted.append(Admitted(media_id, sha, source_file(library, media_id), source_uri))
    return admitted


def source_file(library: Path, media_id: str) -> Path:
    """The stored upload of a media item (the one file beside origin.json)."""
    if not MEDIA_ID_PATTERN.match(media_id):
        raise ValueError(f"malformed media_id {media_id!r}")
    files = [p for p in (library / media_id).iterdir() if p.name != ORIGIN_FILE]
    if len(files) != 1:
        raise FileNotFoundError(f"media {media_id}: expected one stored file, found {len(files)}")
    return files[0]


def origin(library: Path, media_id: str) -> dict:
    return json.loads((library / media_id / ORIGIN_FILE).read_text())


def quarantine(library: Path, quarantine_dir: Path, media_id: str, reason: str) -> Path:
    """Move an item's folder aside with its reason; never delete an upload."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / media_id
    if not target.exists():
        shutil.move(str(library / media_id), target)
    elif (library / media_id).exists():
        shutil.rmtree(library / media_id)  # a re-upload of bytes already held in quarantine
    (target / "REASON.txt").write_text(reason + "\n")
    return target
