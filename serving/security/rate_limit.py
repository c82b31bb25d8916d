"""Per-tier token-bucket rate limits, keyed by user id, answering like an HTTP 429 with Retry-After.

A bucket holds up to `limit` tokens and refills at limit / window; each request takes one. Bursts
up to the limit pass, a steady overload gets exactly the configured rate. Arithmetic is in exact
fractions of a second, so under a fake clock the N+1th request is refused, and the retry time is
exactly right, however many refills came before (floats drift at window edges).

State is per replica: with R replicas behind Serve's router a user gets up to R times the limit.
Sharing the buckets (e.g. Redis with an atomic script) is the later step for a multi-replica deploy.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction


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
