"""Per-tier token-bucket rate limits, keyed by user id, answering like an HTTP 429 with Retry-After.

A bucket holds up to `limit` tokens and refills at limit / window; each request takes one. Bursts
up to the limit pass, a steady overload gets exactly the configured rate. Arithmetic is in exact
fractions of a second, so under a fake clock the N+1th request is refused, and the retry time is
exactly right, however many refills came before (floats drift at window edges).

RateLimiter keeps the buckets in the replica: with R Api replicas a user gets up to R times the
limit. RedisRateLimiter keeps the same buckets in Redis (STREAMLAKE_RATE_LIMIT_REDIS), shared by
every replica: one atomic Lua script per request, on Redis' own clock so replicas' clocks never
disagree. `rate_limiter` picks between them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rate:
    limit: int  # requests allowed in a burst, and per window at steady state
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError(f"a rate needs limit >= 1 and window_s > 0, got {self}")

    @property
    def per_second(self) -> Fraction:
        """Refill speed, exact (Fraction of a float is the float's exact value)."""
        return Fraction(self.limit) / Fraction(self.window_s)


DEFAULT_RATES: Mapping[str, Rate] = {"free": Rate(10), "premium": Rate(1000)}
MAX_KEYS = 100_000  # past this many buckets, full ones (the same as no bucket) are swept out


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float  # 0 when allowed; else seconds until one token is back
    remaining: int  # requests left in the bucket right now

    @property
    def retry_after_header(self) -> str:
        """HTTP Retry-After takes whole seconds: round up, never invite a retry that is too early."""
        return str(math.ceil(self.retry_after_s))


@dataclass(frozen=True)
class _Bucket:
    tokens: Fraction
    updated: Fraction
    rate: Rate  # the rate it was last charged at, to know when it is full again

    def level(self, now: Fraction, rate: Rate) -> Fraction:
        """Tokens at `now`, refilled at `rate` (min() also clamps one filled at a higher tier's rate)."""
        return min(Fraction(rate.limit), self.tokens + (now - self.updated) * rate.per_second)


class RateLimiter:
    """Thread-safe (one lock held for a few arithmetic operations, never across an await)."""

    def __init__(
        self,
        rates: Mapping[str, Rate] = DEFAULT_RATES,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._rates = dict(rates)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._sweep_at = max_keys

    def __len__(self) -> int:
        """Buckets held (users seen recently enough that their bucket is not yet full)."""
        return len(self._buckets)

    def check(self, key: str, tier: str) -> Decision:
        """Take one token from `key`'s bucket at `tier`'s rate; raises KeyError for an unknown tier."""
        rate = self._rates[tier]
        with self._lock:
            now = Fraction(self._clock())
            bucket = self._buckets.get(key)
            tokens = Fraction(rate.limit) if bucket is None else bucket.level(now, rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = _Bucket(tokens, now, rate)
            if len(self._buckets) > self._sweep_at:
                self._drop_full(now)
        retry_after = 0.0 if allowed else float((1 - tokens) / rate.per_second)
        return Decision(allowed=allowed, retry_after_s=retry_after, remaining=math.floor(tokens))

    def _drop_full(self, now: Fraction) -> None:
        """Forget buckets that have refilled: a missing bucket starts full, so no decision changes.

        The next sweep waits until the map has doubled, so a flood of active users costs amortised
        O(1) per request rather than a full scan each.
        """
        full = [key for key, b in self._buckets.items() if b.level(now, b.rate) >= b.rate.limit]
        for key in full:
            del self._buckets[key]
        self._sweep_at = max(self._max_keys, 2 * len(self._buckets))


class Limiter(Protocol):
    def check(self, key: str, tier: str) -> Decision: ...


# KEYS[1] bucket; ARGV limit, refill per second. The bucket is a hash (tokens, updated) that expires
# once it would be full again: a missing bucket starts full, so expiry changes no decision.
_TAKE_TOKEN = """
local limit = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = limit
if state[1] then
  tokens = math.min(limit, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * per_second)
end
local allowed = 0
if tokens >= 1 then
  allowed = 1
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((limit - tokens) / per_second * 1000) + 1000)
return {allowed, string.format('%.17g', tokens)}
"""


def redis_client(connection: str) -> Any:
    """A redis-py client for Feast's connection-string form: `host:port[,password=…][,db=N][,ssl=true]`.

    No retries and half-second timeouts: the limiter runs on the replica's event loop, where
    redis-py's default backoff (sleeps of up to 8 s) would stall every request.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    address, *options = connection.split(",")
    host, _, port = address.rpartition(":")
    settings = dict(option.partition("=")[::2] for option in options)
    unknown = set(settings) - {"password", "db", "ssl", "username"}
    if not host or not port.isdigit() or unknown or not all(settings.values()):
        shown = address + "".join(f",{name}=…" for name in settings)  # never the password itself
        raise ValueError(f"not a Redis connection string (host:port[,password=…]): {shown!r}")
    return redis.Redis(
        host=host,
        port=int(port),
        db=int(settings.get("db", 0)),
        username=settings.get("username"),
        password=settings.get("password"),
        ssl=settings.get("ssl", "false").lower() == "true",
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


class RedisRateLimiter:
    """RateLimiter's buckets in Redis, shared by every Api replica (floats, not exact fractions).

    If Redis cannot be reached, requests are let through (logged once per outage) and Redis is not
    asked again for OUTAGE_PAUSE_S: an unreachable limiter must not take the API down with it, nor
    make each request wait out a timeout. Anything else Redis answers with (a wrong password, a
    read-only replica) is a configuration error: it fails the replica's start, or the request.
    """

    OUTAGE_PAUSE_S = 5.0

    def __init__(
        self,
        client: Any,
        rates: Mapping[str, Rate] = DEFAULT_RATES,
        prefix: str = "streamlake:rate:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis

        self._rates = dict(rates)
        self._prefix = prefix
        self._client = client
        self._clock = clock
        self._take = client.register_script(_TAKE_TOKEN)
        self._paused_until: float | None = None  # set while Redis is unreachable
        try:
            client.ping()
        except redis.AuthenticationError:
            raise  # a ConnectionError to redis-py, but a wrong password is not an outage
        except (redis.ConnectionError, redis.TimeoutError) as err:
            self._pause(err)

    def _pause(self, err: Exception) -> None:
        if self._paused_until is None:
            log.warning("rate limits: Redis unreachable (%s); letting requests through", err)
        self._paused_until = self._clock() + self.OUTAGE_PAUSE_S

    def check(self, key: str, tier: str) -> Decision:
        """As RateLimiter.check; raises KeyError for an unknown tier."""
        import redis

        rate = self._rates[tier]
        per_second = rate.limit / rate.window_s
        let_through = Decision(allowed=True, retry_after_s=0.0, remaining=rate.limit)
        if self._paused_until is not None and self._clock() < self._paused_until:
            return let_through
        try:
            allowed, left = self._take(keys=[self._prefix + key], args=[rate.limit, repr(per_second)])
        except redis.AuthenticationError:
            raise
        except (redis.ConnectionError, redis.TimeoutError) as err:
            self._pause(err)
            return let_through
        if self._paused_until is not None:
            log.info("rate limits: Redis reachable again")
            self._paused_until = None
        tokens = float(left)
        retry_after = 0.0 if allowed else (1 - tokens) / per_second
        return Decision(allowed=bool(allowed), retry_after_s=retry_after, remaining=math.floor(tokens))


def rate_limiter(redis_connection: str | None, rates: Mapping[str, Rate] = DEFAULT_RATES) -> Limiter:
    """Buckets shared through Redis when a connection string is given, else in this replica."""
    if redis_connection:
        return RedisRateLimiter(redis_client(redis_connection), rates)
    return RateLimiter(rates)
