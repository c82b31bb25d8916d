"""Rate limits shared by Api replicas through Redis (STREAMLAKE_RATE_LIMIT_REDIS), against a real
redis-server: two limiters stand for two replicas."""

from __future__ import annotations

import logging
import time

import pytest
import redis

from serving.run import free_port
from serving.security.rate_limit import (
    DEFAULT_RATES,
    RateLimiter,
    RedisRateLimiter,
    rate_limiter,
    redis_client,
)

pytestmark = pytest.mark.cluster


def test_two_replicas_share_one_bucket_per_user(redis_url: str) -> None:
    replicas = [rate_limiter(redis_url), rate_limiter(redis_url)]
    assert all(isinstance(r, RedisRateLimiter) for r in replicas)
    decisions = [replicas[n % 2].check("shared-free", "free") for n in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]  # free: 10 a minute in all
    refused = decisions[-1]
    assert 5.5 < refused.retry_after_s <= 6.0 and refused.retry_after_header == "6"
    assert refused.remaining == 0
    assert replicas[1].check("shared-premium", "premium").remaining == DEFAULT_RATES["premium"].limit - 1
    # Kept in each replica instead, the same traffic gets twice the limit through.
    local = [RateLimiter(), RateLimiter()]
    assert sum(local[n % 2].check("local-free", "free").allowed for n in range(22)) == 20


def test_a_bucket_expires_once_it_would_be_full_and_tiers_are_checked(redis_url: str) -> None:
    limiter = rate_limiter(redis_url)
    limiter.check("expiring", "free")
    ttl_ms = redis_client(redis_url).pttl("streamlake:rate:expiring")
    assert 6_000 < ttl_ms <= 7_000  # one token back in 6 s, plus a second of slack
    with pytest.raises(KeyError):
        limiter.check("expiring", "platinum")


def test_an_unreachable_redis_lets_requests_through_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    with caplog.at_level(logging.WARNING, logger="serving.security.rate_limit"):
        limiter = RedisRateLimiter(redis_client(f"127.0.0.1:{free_port()}"), clock=lambda: now[0])
        started = time.monotonic()
        decisions = [limiter.check("nobody", "free") for _ in range(12)]
        paused_s = time.monotonic() - started
        now[0] = RedisRateLimiter.OUTAGE_PAUSE_S + 1  # past the pause: Redis is asked, and fails again
        decisions.append(limiter.check("nobody", "free"))
    assert all(d.allowed for d in decisions)
    assert paused_s < 0.05, "during the pause, requests do not wait on Redis"
    assert len(caplog.records) == 1 and "Redis unreachable" in caplog.records[0].message  # once per outage


def test_a_wrong_password_is_a_configuration_error_not_an_outage(redis_url: str) -> None:
    with pytest.raises(redis.AuthenticationError):
        rate_limiter(f"{redis_url},password=wrong")


@pytest.mark.parametrize("bad", ["localhost", "host:port", ":6379", "h:6379,colour=red", "h:6379,ssl"])
def test_a_malformed_connection_string_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Redis connection string"):
        redis_client(bad)


def test_the_error_never_shows_the_password() -> None:
    with pytest.raises(ValueError) as refused:
        redis_client("h:6379,password=s3cret,colour=red")
    assert "s3cret" not in str(refused.value) and "password=…" in str(refused.value)
