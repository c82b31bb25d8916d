"""Resources per profile: the same assets run locally or against cluster engines (env-selected)."""

from __future__ import annotations

from assets.common import StreamlakeResource


def resources() -> dict[str, object]:
    """The settings resource reads STREAMLAKE_PROFILE and the engine variables at run time."""
    return {"streamlake": StreamlakeResource()}
