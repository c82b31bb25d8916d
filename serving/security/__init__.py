"""The API's security building blocks: bearer tokens, signed HLS URLs, tier policy, rate limits.

Each module is plain Python (no Ray, no FastAPI), so it is tested alone and the Serve app only wires
it in. This module holds what they share: where signing keys come from, and what a user id may be.

Keys come from the environment. The cluster profile refuses to start without one: a default key in
code would be a key everyone has. The local profile, where nobody sets one, gets a random key per
data dir, made once and kept at `<data_dir>/secrets/<name>.key` with 0600 permissions, so tokens
survive restarts and every replica on the machine agrees, while another checkout never shares it.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
from pathlib import Path

from models.settings import Settings

# What a user id (a token's `sub`, an HLS signature's user) may be: also safe in a URL and a log.
USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# HMAC-SHA256 keys shorter than its 32-byte block of output are guessable sooner than the hash.
MIN_SECRET_BYTES = 32


class MissingSecret(RuntimeError):
    """No usable signing key: unset (outside the local profile), too short, or readable by others."""


def valid_user_id(user: str) -> bool:
    return USER_ID.fullmatch(user) is not None


def load_secret(env_var: str, settings: Settings) -> bytes:
    """The key in `env_var`; for the local profile without one, the data dir's own random key."""
    value = os.environ.get(env_var)
    if value:
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise MissingSecret(f"{env_var} must be at least {MIN_SECRET_BYTES} bytes")
        return value.encode()
    if settings.profile != "local":
        raise MissingSecret(f"{env_var} is not set (required outside the local profile)")
    return _local_secret(settings.data_dir / "secrets" / f"{env_var.lower()}.key")


def _local_secret(path: Path) -> bytes:
    """Read the key file, creating it first if absent; concurrent replicas all end with one key.

    The key is written to a private temp file and hard-linked into place, which fails if another
    process won the race: a reader never sees a half-written file, and nobody overwrites a key.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd, scratch = tempfile.mkstemp(dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(MIN_SECRET_BYTES))
            os.link(scratch, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(scratch)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise MissingSecret(f"{path} is readable by other users; make it 0600 or set the env variable")
    key = path.read_bytes().strip()
    if len(key) < MIN_SECRET_BYTES:
        raise MissingSecret(f"{path} holds no usable key; delete it to have a new one made")
    return key
