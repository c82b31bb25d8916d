"""What one caller may play of an item, and the signed URLs that play it.

Grants: hls_signing signs (package prefix, expiry, user); the tier rides along in the same query
string, and the signature is made with a key derived for that tier, so a `tier=premium` edited into
a free user's URL no longer verifies. The HLS route therefore learns the tier from the URL itself,
which is what a player without an Authorization header (Safari's native HLS) can send.

Tier rules are the Cedar policy's (serving/security/policy.py): the master playlist a tier gets
lists only the variants it may play, and the files of the others are refused even when asked for
by name. A package holds one flat folder (models/media/hls.py): `master.m3u8`, the audio and
subtitle groups, and per video rendition `<name>.m3u8`, `<name>_init.mp4`, `<name>_NNNN.m4s`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from models.media.hls import MASTER
from models.media.transcode import AUDIO_NAME
from serving.security import hls_signing
from serving.security.policy import allowed_renditions

IMAGES_URL = "/images/"
IMAGES_DIR = "images"  # packaged/<media_id>/images/: poster, shot stills, trickplay sprites + map
# One to four plain names (letters, digits, '.', '_', '-', not starting with a dot): no '..', no '%'.
_IMAGE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,3}")
HLS_TTL_S = 4 * 3600  # a long film plus pauses; the player fetches segments all along
TIER = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SUBTITLES_PREFIX = "subs_"  # models/media/hls.py copies each WebVTT track to subs_<lang>.vtt
SHARED_PREFIXES = (f"{AUDIO_NAME}.", f"{AUDIO_NAME}_", SUBTITLES_PREFIX)

Device = Literal["any", "web", "apple"]
# Codecs each device class decodes: browsers' MediaSource has no HEVC (DESIGN §7), Apple's has no VP9.
DEVICE_CODECS: Mapping[Device, frozenset[str] | None] = {
    "any": None,
    "web": frozenset({"h264", "vp9", "av1"}),
    "apple": frozenset({"h264", "hevc"}),
}


@dataclass(frozen=True)
class Grant:
    user: str
    tier: str
    expires_at: int
    query: str  # the canonical query string, appended to every URI of the playlists served


def _tier_key(secret: bytes, tier: str) -> bytes:
    return hmac.new(secret, b"hls-tier\n" + tier.encode(), hashlib.sha256).hexdigest().encode()


def grant(media_id: str, user: str, tier: str, secret: bytes, ttl_s: int = HLS_TTL_S) -> Grant:
    """A signed grant of the package of media_id to user, at tier, for ttl_s seconds."""
    if not TIER.fullmatch(tier):
        raise ValueError(f"invalid tier {tier!r}")
    signed = dict(parse_qsl(hls_signing.sign(media_id, user, ttl_s, _tier_key(secret, tier))))
    return Grant(user, tier, int(signed["exp"]), urlencode({**signed, "tier": tier}))


def check(path: str, query: str, user: str | None, secret: bytes) -> Grant:
    """The grant that query carries for URL path; raises an HlsAuthError if there is none.

    user: the caller's id when the request names one (a bearer token); otherwise the signed uid is
    taken as is, and the signature still binds path, expiry, tier and uid together.
    """
    try:
        fields = dict(parse_qsl(query[: hls_signing.MAX_TOKEN_CHARS], max_num_fields=8))
    except ValueError as err:
        raise hls_signing.Forged("too many query fields") from err
    tier, signed_user = fields.get("tier", ""), fields.get("uid", "")
    if not TIER.fullmatch(tier):
        raise hls_signing.Forged("missing or malformed tier")
    hls_signing.verify(path, query, user or signed_user, _tier_key(secret, tier))
    canonical = {name: fields[name] for name in ("exp", "uid", "sig", "tier")}
    return Grant(signed_user, tier, int(fields["exp"]), urlencode(canonical))


def rendition_name(playlist_path: str) -> str:
    """`h264_720p` of `<media_id>/hls/h264_720p.m3u8`."""
    return PurePosixPath(playlist_path).stem


def playable(tier: str, device: Device, renditions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The renditions the tier may play (Cedar) and the device decodes, in their given order."""
    codecs = DEVICE_CODECS[device]
    allowed = allowed_renditions(tier, renditions)
    return [r for r in allowed if codecs is None or r.get("codec") in codecs]


def allowed_names(tier: str, renditions: Sequence[Mapping[str, Any]], device: Device = "any") -> set[str]:
    return {
        rendition_name(r["playlist_path"]) for r in playable(tier, device, renditions) if r["playlist_path"]
    }


def master_query(grant: Grant, device: Device) -> str:
    """The master playlist's query: the grant, and the device class it is narrowed to (if any)."""
    return grant.query if device == "any" else f"{grant.query}&{urlencode({'device': device})}"


def in_grant(relative: str, allowed: Collection[str]) -> bool:
    """Whether a package file may be served: the master, the shared audio and subtitle groups, and
    the files of allowed renditions; the files of any other rendition are not."""
    if relative == MASTER or relative.startswith(SHARED_PREFIXES):
        return True
    return any(relative == f"{name}.m3u8" or relative.startswith(f"{name}_") for name in allowed)


def filter_master(text: str, allowed: Collection[str]) -> str:
    """The master playlist without the variants (EXT-X-STREAM-INF + URI line) outside allowed."""
    kept: list[str] = []
    variant: str | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF"):
            variant = line
        elif variant is not None and line.strip() and not line.startswith("#"):
            if rendition_name(line.strip()) in allowed:
                kept += [variant, line]
            variant = None
        else:
            kept.append(line)
    return "\n".join(kept) + "\n"


def image_url(media_id: str, package_path: str | None) -> str | None:
    """The public URL of an image the lake names by its package path (`<media_id>/images/…`)."""
    prefix = f"{media_id}/{IMAGES_DIR}/"
    if not package_path or not package_path.startswith(prefix):
        return None
    return f"{IMAGES_URL}{media_id}/{package_path.removeprefix(prefix)}"


def image_file(packaged: Path, media_id: str, relative: str) -> Path:
    """The file an /images URL names; raises BadPath for anything outside the item's images folder.

    Images are not signed: posters and scrub previews are catalog art, shown before anyone plays.
    """
    if not (hls_signing.MEDIA_ID.fullmatch(media_id) and _IMAGE_PATH.fullmatch(relative)):
        raise hls_signing.BadPath(f"not a plain image path: {relative[:200]!r}")
    base = (packaged / media_id / IMAGES_DIR).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise hls_signing.BadPath(f"{relative[:200]!r} resolves outside the images folder")
    return target
