"""The inbox and the content-addressed library behind it.

A file dropped in the inbox is hashed and moved to library/<media_id>/, where media_id comes from
its content: a re-upload is the same item, and a partition key never depends on a file name.
A sidecar <stem>.json beside the file may carry title, description and tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

ORIGIN_FILE = "origin.json"
SIDECAR_FILE = "sidecar.json"
REASON_FILE = "REASON.txt"
BOOKKEEPING = {ORIGIN_FILE, SIDECAR_FILE, REASON_FILE}
SIDECAR_MAX_BYTES = 64 * 1024
log = logging.getLogger(__name__)
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
    """A file name that is plain ASCII, no separators, no leading dot, never one of our own."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.encode("ascii", "replace").decode()).lstrip(".")
    cleaned = cleaned[:120] or "upload"
    return f"upload_{cleaned}" if cleaned in BOOKKEEPING else cleaned


def display_path(path: Path) -> str:
    """The path as text the lake can store: undecodable bytes of a name (not UTF-8) are written as
    backslash escapes, where str(path) would carry lone surrogates that no UTF-8 writer accepts."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def inside(root: Path, candidate: Path) -> Path:
    """Resolve candidate and refuse anything that escapes root (symlinks, '..')."""
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PermissionError(f"path escapes the media root: {candidate}")
    return resolved


class Sidecar(BaseModel):
    """What an uploader may say about a file; anything else in the JSON is ignored."""

    model_config = ConfigDict(extra="ignore")
    title: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=5000)
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)


def _read_sidecar(meta_path: Path) -> dict:
    """Validated metadata; a symlinked, oversized or malformed sidecar is ignored (and kept)."""
    if meta_path.is_symlink() or not meta_path.is_file():
        return {}
    try:
        if meta_path.stat().st_size > SIDECAR_MAX_BYTES:
            raise ValueError(f"larger than {SIDECAR_MAX_BYTES} bytes")
        return Sidecar.model_validate_json(meta_path.read_bytes()).model_dump(exclude_none=True)
    except (OSError, ValueError) as err:
        log.warning("ignoring sidecar %s: %s", meta_path.name, err)
        return {}


def _admit_one(path: Path, library: Path, held: set[str]) -> Admitted | None:
    sha = sha256_of(path)
    media_id = sha[:16]
    target_dir = library / media_id
    meta_path = path.with_name(path.stem + ".json")
    if media_id in held:
        path.unlink()  # identical bytes are already held in quarantine
        return None
    try:
        target_dir.mkdir()
    except FileExistsError:
        path.unlink()  # identical bytes are already stored under this id
        return Admitted(media_id, sha, source_file(library, media_id), display_path(path))
    source_uri = display_path(path)
    origin = {
        "source_uri": source_uri,
        "name": Path(source_uri).name,
        "sha256": sha,
        **_read_sidecar(meta_path),
    }
    shutil.move(str(path), target_dir / safe_name(path.name))
    if meta_path != path and (meta_path.exists() or meta_path.is_symlink()):
        meta_path.rename(target_dir / SIDECAR_FILE)  # kept beside the upload, never lost
    (target_dir / ORIGIN_FILE).write_text(json.dumps(origin, ensure_ascii=True))
    return Admitted(media_id, sha, source_file(library, media_id), source_uri)


def admit(
    inbox: Path, library: Path, min_age_s: float = 0.0, quarantine_dir: Path | None = None
) -> list[Admitted]:
    """Move settled inbox files into the library; return the items now held there.

    A file that cannot be read this time stays in the inbox for the next scan; one whose bytes
    are already quarantined is not admitted again.
    """
    library.mkdir(parents=True, exist_ok=True)
    held = {p.name for p in quarantine_dir.iterdir()} if quarantine_dir and quarantine_dir.is_dir() else set()
    admitted = []
    now = time.time()
    for path in sorted(inbox.iterdir()) if inbox.is_dir() else []:
        try:
            if path.suffix == ".json" or not (path.is_file() or path.is_symlink()):
                continue
            if not path.is_symlink() and now - path.stat().st_mtime < min_age_s:
                continue  # still being written
            item = _admit_one(path, library, held)
        except OSError as err:
            log.warning("inbox file %r not admitted this time: %s", path.name, err)
            continue
        if item is not None:
            admitted.append(item)
    return admitted


def stored_ids(library: Path) -> list[str]:
    """Every item held in the library: what the media partitions must cover."""
    return sorted(p.name for p in library.iterdir() if p.is_dir() and MEDIA_ID_PATTERN.match(p.name))


def source_file(library: Path, media_id: str) -> Path:
    """The stored upload of a media item (the one file beside origin.json)."""
    if not MEDIA_ID_PATTERN.match(media_id):
        raise ValueError(f"malformed media_id {media_id!r}")
    files = [p for p in (library / media_id).iterdir() if p.name not in BOOKKEEPING]
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
    (target / REASON_FILE).write_text(reason + "\n")
    return target
