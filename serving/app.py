"""The Streamlake HTTP API: one Ray Serve application over the published snapshots and the champion.

`build_app` wires three deployments by handles: `Api` (the FastAPI ingress), `Catalog` (the
api_catalog snapshot) and `Recommender` (the MLflow champion plus the recs_topk cold-start list).
Settings and the reload interval are bind arguments, never globals, so the same code serves a test
lake, the local data folder or a cluster lake. `serve run serving.app:app` uses the environment's
settings. The API reads nothing but published Delta snapshots and the registry's `champion`.

No `from __future__ import annotations` here: Serve rebuilds the FastAPI routes in its proxy,
where string annotations such as `MediaId` no longer resolve.
"""

import asyncio
import logging
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from models.recsys.registry import Champion, champion_version, load_champion
from models.settings import Settings, get_settings
from serving.snapshots import (
    CATALOG_TABLE,
    RECS_TABLE,
    CatalogSnapshot,
    ColdStart,
    load_catalog,
    load_cold_start,
    table_version,
)

log = logging.getLogger("ray.serve")  # Serve routes this logger into the replica's log file

APP_NAME = "streamlake"
RELOAD_INTERVAL_S = 5.0
# Items the catalog lacks are dropped after ranking, so ask the model for spares.
OVERFETCH = 2

MEDIA_ID = r"^[0-9a-f]{16}$"
USER_ID = r"^[A-Za-z0-9_-]+$"

# Small replicas (three of them fit in well under one of the two cores), bounded queues so that
# overload answers 503 at once instead of piling up, and a short drain on shutdown.
REPLICA_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 32,
    "max_queued_requests": 64,
    "health_check_period_s": 10.0,
    "graceful_shutdown_timeout_s": 5.0,
}


class Rendition(BaseModel):
    rung: str | None
    codec: str | None
    width: int | None
    height: int | None
    bitrate: int | None
    playlist_path: str | None


class Subtitle(BaseModel):
    lang: str | None
    format: str | None
    path: str | None


class MediaItem(BaseModel):
    """One api_catalog row: what a player needs to start playback."""

    media_id: str
    title: str | None
    description: str | None
    tags: list[str] | None
    duration_s: float | None
    width: int | None
    height: int | None
    master_playlist: str | None
    poster: str | None
    renditions: list[Rendition] | None
    subtitles: list[Subtitle] | None
    shot_count: int | None


class Health(BaseModel):
    status: Literal["ok"]
    catalog_version: int | None
    model_version: str | None


class RecommendedItem(BaseModel):
    media_id: str
    score: float | None
    rank: int
    title: str | None


class Recommendations(BaseModel):
    user_id: str
    model_version: str | None
    source: Literal["champion", "cold_start"]
    items: list[RecommendedItem]


class _Watcher:
    """Polls for newly published versions every interval and swaps them in, off the event loop.

    A failed poll (no lake or registry yet, a store briefly unreachable) keeps what is already
    held: the replica starts, and goes on serving, with the last snapshot it could read.
    """

    _watch: asyncio.Task[None]

    def _refresh(self) -> None:
        raise NotImplementedError

    def _reload(self) -> None:
        try:
            self._refresh()
        except Exception:
            log.exception("%s: reload failed; serving the previous snapshot", type(self).__name__)

    async def _start_watching(self, interval_s: float) -> None:
        """Load what is published now, then keep polling in the background."""
        await asyncio.to_thread(self._reload)
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop(interval_s))

    async def _watch_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self._reload)

    def check_health(self) -> None:
        """Serve restarts a replica whose watcher died: it would serve one snapshot forever."""
        if self._watch.done():
            raise RuntimeError(f"{type(self).__name__}: snapshot watcher stopped")


@serve.deployment(**REPLICA_OPTIONS)
class Catalog(_Watcher):
    """api_catalog in memory, keyed by media_id."""

    async def __init__(self, settings: Settings, reload_interval_s: float) -> None:
        self._settings = settings
        self._snapshot = CatalogSnapshot()
        await self._start_watching(reload_interval_s)

    def _refresh(self) -> None:
        if table_version(self._settings, CATALOG_TABLE) != self._snapshot.version:
            self._snapshot = load_catalog(self._settings)
            log.info("api_catalog: now serving Delta version %s", self._snapshot.version)

    async def version(self) -> int | None:
        return self._snapshot.version

    async def get(self, media_id: str) -> dict[str, Any] | None:
        return self._snapshot.rows.get(media_id)

    async def titles(self, media_ids: list[str]) -> dict[str, str | None]:
        """Title of each id the catalog holds; ids it lacks are left out."""
        rows = self._snapshot.rows
        return {mid: rows[mid]["title"] for mid in media_ids if mid in rows}


class ServedModel(NamedTuple):
    """The champion with the users it knows, swapped in as one object so they never mismatch."""

    champion: Champion
    known: frozenset[str]


@serve.deployment(**REPLICA_OPTIONS)
class Recommender(_Watcher):
    """Ranks for users the champion knows; everyone else gets the published cold-start list."""

    async def __init__(self, settings: Settings, reload_interval_s: float) -> None:
        self._settings = settings
        self._model: ServedModel | None = None
        self._cold = ColdStart()
        await self._start_watching(reload_interval_s)

    def _refresh(self) -> None:
        if champion_version(self._settings) != self._model_version():
            self._load_champion()
        if table_version(self._settings, RECS_TABLE) != self._cold.version:
            self._cold = load_cold_start(self._settings)
            log.info("recs_topk: cold-start list from Delta version %s", self._cold.version)

    def _load_champion(self) -> None:
        try:
            champion = load_champion(self._settings)
        except LookupError:
            log.warning("no champion registered: every user gets the cold-start list")
            self._model = None
            return
        self._model = ServedModel(champion, champion.known_users)
        log.info("champion: now serving model version %s", champion.version)

    def _model_version(self) -> str | None:
        return self._model.champion.version if self._model else None

    async def model_version(self) -> str | None:
        return self._model_version()

    async def recommend(self, user_id: str, n: int) -> dict[str, Any]:
        """Up to n ranked items (media_id, score, rank) with the model version and the source."""
        model = self._model
        if model is not None and user_id in model.known:
            champion = model.champion
            frame = await asyncio.to_thread(champion.recommend, [user_id], n)
            items = frame.sort("rank").select("media_id", "score", "rank").to_dicts()
            return {"model_version": champion.version, "source": "champion", "items": items}
        cold = self._cold
        return {"model_version": cold.model_version, "source": "cold_start", "items": cold.items[:n]}


api = FastAPI(
    title="Streamlake API",
    description="Playback metadata and recommendations over the published lake snapshots.",
)

UserId = Annotated[
    str,
    PathParam(min_length=1, max_length=64, pattern=USER_ID, description="Letters, digits, '_' or '-'."),
]
MediaId = Annotated[str, PathParam(pattern=MEDIA_ID, description="16 lowercase hex characters.")]


@serve.deployment(**REPLICA_OPTIONS)
@serve.ingress(api)
class Api:
    """HTTP routes; the work happens in Catalog and Recommender, reached by handles."""

    def __init__(self, catalog: DeploymentHandle, recommender: DeploymentHandle) -> None:
        self._catalog = catalog
        self._recommender = recommender

    @api.get("/health")
    async def health(self) -> Health:
        catalog_version = await self._catalog.version.remote()
        model_version = await self._recommender.model_version.remote()
        return Health(status="ok", catalog_version=catalog_version, model_version=model_version)

    @api.get("/media/{media_id}")
    async def media(self, media_id: MediaId) -> MediaItem:
        row = await self._catalog.get.remote(media_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"unknown media_id '{media_id}'")
        return MediaItem(**row)

    @api.get("/recommendations/{user_id}")
    async def recommendations(
        self, user_id: UserId, k: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> Recommendations:
        """Top-k for user_id; ranks are renumbered after items missing from the catalog are dropped."""
        ranked = await self._recommender.recommend.remote(user_id, k * OVERFETCH)
        titles = await self._catalog.titles.remote([item["media_id"] for item in ranked["items"]])
        kept = [item for item in ranked["items"] if item["media_id"] in titles][:k]
        items = [
            RecommendedItem(**{**item, "rank": rank}, title=titles[item["media_id"]])
            for rank, item in enumerate(kept, start=1)
        ]
        return Recommendations(
            user_id=user_id, model_version=ranked["model_version"], source=ranked["source"], items=items
        )

    @api.get("/recommendations", include_in_schema=False)
    @api.get("/recommendations/", include_in_schema=False)
    async def recommendations_without_user(self) -> None:
        """An empty user_id matches no route; answer 422 like any other malformed id, not 404."""
        raise HTTPException(status_code=422, detail="user_id must not be empty")


def build_app(settings: Settings, reload_interval_s: float = RELOAD_INTERVAL_S) -> Application:
    """The whole API as one application; deployments get their configuration here, at bind time."""
    catalog = Catalog.bind(settings, reload_interval_s)
    recommender = Recommender.bind(settings, reload_interval_s)
    return Api.bind(catalog, recommender)


app = build_app(get_settings())
