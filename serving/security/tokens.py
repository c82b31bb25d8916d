"""Bearer tokens: HS256 JWTs (PyJWT) carrying the user id (`sub`) and subscription tier (`tier`).

A standard format rather than our own, so any client library can read one and the verification
edge cases (algorithm confusion, `alg: none`, claim types, clock checks) are the library's well
trodden code. Only HS256 is accepted, whatever the header says. Errors are split by what the API
tells the caller: expired (log in again), tampered (signature wrong: forged, or another key's),
malformed (not a token of ours at all); every one of them is a 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from models.settings import Settings
from serving.security import load_secret, valid_user_id

SECRET_ENV = "STREAMLAKE_API_SECRET"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 3600
MAX_TOKEN_CHARS = 4096  # longer is never ours; refuse it before parsing anything
REQUIRED_CLAIMS = ["sub", "tier", "iat", "exp"]


class TokenError(Exception):
    """Any reason a bearer token is not accepted (the API answers 401)."""


class TokenExpired(TokenError):
    """The signature is good but the token's `exp` has passed."""


class TokenTampered(TokenError):
    """The signature does not match: the token was altered, or signed with another key."""


class TokenMalformed(TokenError):
    """Not a well-formed token of ours: missing, truncated, wrong algorithm, claims missing or mistyped."""


@dataclass(frozen=True)
class Claims:
    sub: str  # user id
    tier: str
    issued_at: int  # Unix seconds
    expires_at: int


def api_secret(settings: Settings) -> bytes:
    """The signing key: STREAMLAKE_API_SECRET, or the local data dir's own (see serving.security)."""
    return load_secret(SECRET_ENV, settings)


def issue(sub: str, tier: str, secret: bytes, ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A signed token for `sub` at `tier`, valid for ttl_s seconds from now."""
    if not valid_user_id(sub):
        raise ValueError(f"invalid user id {sub!r}")
    if not tier:
        raise ValueError("tier must not be empty")
    issued_at = int(time.time() if now is None else now)
    claims = {"sub": sub, "tier": tier, "iat": issued_at, "exp": issued_at + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str, secret: bytes) -> Claims:
    """The claims of a valid token; raises a TokenError subclass saying why otherwise."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenMalformed("missing or oversized token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError as err:
        raise TokenExpired("token expired") from err
    except jwt.InvalidSignatureError as err:
        raise TokenTampered("token signature does not match") from err
    except jwt.InvalidTokenError as err:
        raise TokenMalformed(f"malformed token: {err}") from err
    sub, tier = claims["sub"], claims["tier"]
    if not (isinstance(sub, str) and valid_user_id(sub) and isinstance(tier, str) and tier):
        raise TokenMalformed("token claims 'sub' or 'tier' are not valid")
    return Claims(sub=sub, tier=tier, issued_at=int(claims["iat"]), expires_at=int(claims["exp"]))


def bearer(authorization: str | None) -> str:
    """The token from an `Authorization: Bearer <token>` header value (the scheme is case-insensitive)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMalformed("expected 'Authorization: Bearer <token>'")
    return token.strip()
