"""Tier rules as a Cedar policy (renditions.cedar beside this file), evaluated with cedarpy.

The rules are data in a policy language, not conditions spread through handlers: they can be read,
reviewed and changed on their own, and Cedar denies by default, so a tier the policy does not name
(a typo, a token from an older scheme) gets nothing rather than everything. Tier and rendition go
to Cedar as structured entity ids, never spliced into policy text, so no tier string can inject.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import cedarpy

log = logging.getLogger(__name__)

POLICY_FILE = Path(__file__).with_name("renditions.cedar")
PLAY = {"type": "Action", "id": "play"}

R = TypeVar("R", bound=Mapping[str, Any])


@cache
def _policies() -> cedarpy.PolicySet:
    """Parsed once per process; a syntax error in the file fails the first request loudly."""
    return cedarpy.PolicySet.from_str(POLICY_FILE.read_text())


def _entity(uid: dict[str, str], rendition: Mapping[str, Any]) -> dict[str, Any]:
    """A Rendition entity; `height` is left out when unknown (audio), which the policy allows for."""
    height = rendition.get("height")
    return {"uid": uid, "attrs": {} if height is None else {"height": int(height)}, "parents": []}


def allowed_renditions(tier: str, renditions: Sequence[R]) -> list[R]:
    """The renditions (rows with an optional `height`) that `tier` may play, in their given order.

    One batched Cedar call decides them all.
    """
    uids = [{"type": "Rendition", "id": str(index)} for index in range(len(renditions))]
    if not uids:
        return []
    principal = {"type": "Tier", "id": tier}
    requests = [{"principal": principal, "action": PLAY, "resource": uid} for uid in uids]
    entities = [_entity(uid, rendition) for uid, rendition in zip(uids, renditions, strict=True)]
    results = cedarpy.is_authorized_batch(requests, _policies(), entities)
    for result in results:
        if result.diagnostics.errors:  # an evaluation error denies; say why, it is a policy bug
            log.warning("rendition policy errors: %s", result.diagnostics.errors)
    return [rendition for rendition, result in zip(renditions, results, strict=True) if result.allowed]
