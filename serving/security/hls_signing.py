"""Signed HLS URLs: an HMAC-SHA256 over (path prefix, expiry, user), carried as a query string.

Players fetch playlists and segments with plain GETs (Safari's native player sends no Authorization
header), so the grant must ride in the URL, as CDN signed URLs do. One signature covers the whole
package prefix `/hls/{media_id}/`, so the server signs once per playback and `rewrite_playlist`
appends the same token to every URI a playlist names. The user is signed in too: a URL copied to
someone else fails for them, and it stops working at its expiry either way.

Paths are checked before any file is touched: `safe_media_path` only accepts plain file names
(letters, digits, `.`, `_`, `-`, never starting with a dot), so `..`, `%2e%2e` (any `%`), backslashes,
absolute paths and empty segments never reach the file system, and the resolved file must still lie
inside the item's package (a symlink planted there cannot lead out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from models.settings import Settings
from serving.security import load_secret, valid_user_id

SECRET_ENV = "STREAMLAKE_HLS_SECRET"
URL_ROOT = "/hls/"
PACKAGE_DIR = "hls"  # packaged/<media_id>/hls/ holds the master, media playlists and segments
MEDIA_ID = re.compile(r"[0-9a-f]{16}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_DEPTH = 8  # folders below the package root a URI may name
MAX_TOKEN_CHARS = 512
_EXPIRES = re.compile(r"[0-9]{1,12}")
# A tag's URI attribute: EXT-X-MAP (init segments), EXT-X-MEDIA (audio/subtitle playlists),
# EXT-X-I-FRAME-STREAM-INF, EXT-X-KEY, EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT.
_URI_ATTRIBUTE = re.compile(r'(?<=[:,])URI="([^"]*)"')


class HlsAuthError(PermissionError):
    """Any reason a signed HLS request is refused (the API answers 403)."""


class BadPath(HlsAuthError):
    """Not a file path under /hls/<media_id>/: traversal, encoding tricks, or a malformed media id."""


class Forged(HlsAuthError):
    """The signature is missing, malformed or wrong (also: signed for another media item)."""


class Expired(HlsAuthError):
    """The signature is good but its expiry has passed."""


class WrongUser(HlsAuthError):
    """The URL was signed for another user."""


def hls_secret(settings: Settings) -> bytes:
    """The signing key: STREAMLAKE_HLS_SECRET, or the local data dir's own (see serving.security)."""
    return load_secret(SECRET_ENV, settings)


def _media_id(media_id: str) -> str:
    if not MEDIA_ID.fullmatch(media_id):
        raise BadPath(f"invalid media id {media_id!r}")
    return media_id


def _names(relative: str) -> list[str]:
    """The folder and file names of a package-relative path, each one a plain name."""
    names = relative.split("/")
    if len(names) > MAX_DEPTH or not all(_NAME.fullmatch(name) for name in names):
        raise BadPath(f"not a plain package path: {relative[:200]!r}")
    return names


def safe_media_path(root: Path, media_id: str, relative: str) -> Path:
    """The file `relative` names inside `root/<media_id>/hls/`; raises BadPath if it would lie outside."""
    base = (root / _media_id(media_id) / PACKAGE_DIR).resolve()
    target = base.joinpath(*_names(relative)).resolve()
    if not target.is_relative_to(base):
        raise BadPath(f"{relative[:200]!r} resolves outside the package")
    return target


def split_path(path: str) -> tuple[str, str]:
    """(media_id, package-relative path) of a URL path `/hls/<media_id>/<relative>`, both validated."""
    if not path.startswith(URL_ROOT):
        raise BadPath(f"not under {URL_ROOT}")
    media_id, _, relative = path.removeprefix(URL_ROOT).partition("/")
    _names(relative)
    return _media_id(media_id), relative


def _signature(secret: bytes, media_id: str, expires: int, user: str) -> str:
    message = f"{URL_ROOT}{media_id}/\n{expires}\n{user}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(media_id: str, user: str, ttl_s: int, secret: bytes, now: float | None = None) -> str:
    """The query string (`exp=…&uid=…&sig=…`) granting `user` the package of `media_id` for ttl_s."""
    if not valid_user_id(user):
        raise ValueError(f"invalid user id {user!r}")
    expires = int(time.time() if now is None else now) + ttl_s
    signature = _signature(secret, _media_id(media_id), expires, user)
    return urlencode({"exp": expires, "uid": user, "sig": signature})


def verify(path: str, token: str, user: str, secret: bytes, now: float | None = None) -> None:
    """Raise an HlsAuthError unless `token` grants `user` the URL path `path` at `now`."""
    media_id, _ = split_path(path)
    if len(token) > MAX_TOKEN_CHARS:
        raise Forged("oversized signature")
    try:
        fields = dict(parse_qsl(token, max_num_fields=8))
    except ValueError as err:
        raise Forged("too many query fields") from err
    expires, signed_user, signature = fields.get("exp", ""), fields.get("uid", ""), fields.get("sig", "")
    if not (_EXPIRES.fullmatch(expires) and valid_user_id(signed_user) and signature):
        raise Forged("missing or malformed signature fields")
    if signed_user != user:
        raise WrongUser("signed for another user")
    expected = _signature(secret, media_id, int(expires), signed_user)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Forged("signature does not match this path, user and expiry")
    if int(expires) <= (time.time() if now is None else now):
        raise Expired("signed URL expired")


def _with_token(uri: str, token: str) -> str:
    """The URI with the token appended to its query; absolute URIs (another host, data:, skd:) are
    left alone so the grant never leaks to a server that is not ours."""
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc or not parts.path:
        return uri
    return urlunsplit(parts._replace(query=f"{parts.query}&{token}" if parts.query else token))


def rewrite_playlist(text: str, token: str) -> str:
    """The m3u8 text with the token on every relative URI: segment and playlist lines, and tags'
    URI attributes (init segments, alternative audio and subtitle playlists, keys, parts)."""

    def attribute(match: re.Match[str]) -> str:
        return f'URI="{_with_token(match.group(1), token)}"'

    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#EXT"):
            line = _URI_ATTRIBUTE.sub(attribute, line)
        elif stripped and not stripped.startswith("#"):
            line = _with_token(stripped, token)
        lines.append(line)
    return "\n".join(lines) + "\n"
