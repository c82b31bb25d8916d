"""The Streamlake HTTP API: one Ray Serve application over the published snapshots and the champion.

`build_app` wires the deployments by handles: `Api` (the FastAPI ingress: auth, rate limits, HLS
delivery, metrics, and, held in each replica and read without a hop, its `Catalog`: api_catalog
plus chapters and trickplay, and its `Recommender`: the MLflow champion plus the recs_topk
cold-start list), `Search` (hybrid BM25 + MiniLM over the catalog), `Similar` (text embeddings +
co-watch) and `EventWriter` (buffered, exactly-once event ingest).
Settings, reload interval, rate limits and the events flush interval are bind arguments, never
globals, so the same code serves a test lake, the local data folder or a cluster lake.
`serve run serving.app:app` uses the environment's settings. The API reads nothing but published
Delta tables and the registry's `champion`, each reloaded when its version moves, and writes only
through the events path (view_events, events_rejected, hourly_stats).

Rate limits live in the Api replica (one by default), or in Redis shared by all replicas when
STREAMLAKE_RATE_LIMIT_REDIS is set (see serving/security/rate_limit.py). /hls is not rate limited:
a player fetches a segment every few seconds, and the signed grant already bounds who may fetch
what, and until when.

No `from __future__ import annotations` here: Serve rebuilds the FastAPI routes in its proxy,
where string annotations such as `MediaId` no longer resolve.
"""

import asyncio
import functools
import itertools
import logging
import secrets
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from models.events.ingest import refresh_hours
from models.observability import pipeline_metrics
from models.qoe.ranking import demote
from models.recsys.exploration import explore_ranking
from models.recsys.registry import Champion, champion_version, load_champion
from models.search.catalog_search import SOURCE_TABLES, CatalogIndex, Filters
from models.settings import Settings, get_settings
from serving import metrics, playback, tracing
from serving.body_limit import BodyLimit
from serving.events_buffer import EventBuffer, ingest_batches
from serving.observe import Observe
from serving.security import hls_signing, tokens
from serving.security.rate_limit import DEFAULT_RATES, Rate, rate_limiter
from serving.similar import SimilarIndex
from serving.snapshots import (
    CATALOG_TABLE,
    EVIDENCE_TABLE,
    NO_EVIDENCE,
    NO_QOE,
    QOE_TABLE,
    RECS_TABLE,
    CatalogSnapshot,
    ColdStart,
    PlaybackExtras,
    extras_versions,
    load_catalog,
    load_cold_start,
    load_evidence,
    load_extras,
    load_title_qoe,
    read_versioned,
    table_version,
)

log = logging.getLogger("ray.serve")  # Serve routes this logger into the replica's log file

APP_NAME = "streamlake"
RELOAD_INTERVAL_S = 5.0
# Items the catalog lacks are dropped after ranking, so ask for spares.
OVERFETCH = 2
# How deep into a user's ranking exploration looks for titles to try.
EXPLORE_CANDIDATES = 200
# Events wait at most this long for their group commit (plus the write itself).
FLUSH_INTERVAL_S = 0.25
FLUSH_MAX_ROWS = 5_000
MAX_EVENTS_PER_REQUEST = 1_000
# A full batch of ordinary events is ~300 KB; anything past this is refused (413) before parsing.
MAX_BODY_BYTES = 2 * 1024 * 1024

MEDIA_ID = r"^[0-9a-f]{16}$"
DeviceClass = Literal["mobile", "desktop", "tv"]  # models/qoe/metrics.py's classes
USER_ID = r"^[A-Za-z0-9_-]+$"
SIMILAR_TABLES = ("text_embeddings", "co_watch")
HLS_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".vtt": "text/vtt",
}
# The player page and its scripts; hls.js itself comes from node_modules (settings.hls_js).
STATIC_DIR = Path(__file__).parent / "static"
PAGE_HEADERS = {"Cache-Control": "no-cache"}

# Small replicas (six of them fit in under two cores), bounded queues so that overload answers
# 503 at once instead of piling up, and a short drain on shutdown.
REPLICA_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 32,
    "max_queued_requests": 64,
    "health_check_period_s": 10.0,
    "graceful_shutdown_timeout_s": 5.0,
}
# One writer, so per-request counts are exact; a drain long enough for the last group commit.
WRITER_OPTIONS: dict[str, Any] = {**REPLICA_OPTIONS, "num_replicas": 1, "graceful_shutdown_timeout_s": 30.0}


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
    """One api_catalog row, with the renditions the caller's tier may play."""

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


class MediaSummary(BaseModel):
    media_id: str
    title: str | None
    duration_s: float | None
    poster_url: str | None


class MediaList(BaseModel):
    """One page of the catalog, by title."""

    total: int
    items: list[MediaSummary]


class Chapter(BaseModel):
    chapter_idx: int
    start_s: float | None
    end_s: float | None
    title: str | None


class Trickplay(BaseModel):
    """The WebVTT map from time ranges to sprite tiles (`sprite_000.jpg#xywh=…`, beside the map)."""

    url: str
    width: int | None  # one tile
    height: int | None
    time_s: float | None  # seconds between tiles


class SubtitleTrack(BaseModel):
    lang: str
    url: str


class Playback(BaseModel):
    """What a player needs: the signed master playlist and what goes around it."""

    media_id: str
    title: str | None
    duration_s: float | None
    tier: str
    device: playback.Device
    master_url: str
    expires_at: int
    renditions: list[Rendition]
    subtitles: list[SubtitleTrack]
    chapters: list[Chapter]
    poster_url: str | None
    trickplay: Trickplay | None


class Health(BaseModel):
    status: Literal["ok"]
    catalog_version: int | None
    model_version: str | None


class RecommendedItem(BaseModel):
    media_id: str
    score: float | None
    rank: int
    title: str | None
    explored: bool = Field(False, description="Placed by exploration, not by the model's rank.")


class Recommendations(BaseModel):
    user_id: str
    model_version: str | None
    source: Literal["champion", "cold_start"]
    items: list[RecommendedItem]


class SimilarItem(BaseModel):
    media_id: str
    title: str | None
    score: float  # reciprocal-rank fusion of the two retrievers
    content: float | None  # text-embedding cosine, when among the closest
    co_watch: float | None  # co_watch weight, when watched together


class SimilarItems(BaseModel):
    media_id: str
    items: list[SimilarItem]


class SearchHit(BaseModel):
    media_id: str
    title: str | None
    score: float
    matched_by: list[str]
    bm25_rank: int | None
    vector_rank: int | None
    duration_s: float | None
    genres: list[str]


class SearchResults(BaseModel):
    query: str
    items: list[SearchHit]


class EventBatch(BaseModel):
    """Player events as sent; each row is validated on its own (see models/events/ingest.py)."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class EventCounts(BaseModel):
    accepted: int
    duplicates: int
    rejected: int


class _Watcher:
    """Polls for newly published versions every interval and swaps them in, off the event loop.

    A failed poll (no lake or registry yet, a store briefly unreachable) keeps what is already
    held: the replica starts, and goes on serving, with the last snapshot it could read.
    """

    _watch: asyncio.Task[None]

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _refresh(self) -> None:
        raise NotImplementedError

    def _reload(self) -> None:
        try:
            with tracing.span(f"reload {type(self).__name__}"):
                self._refresh()
        except Exception:
            log.exception("%s: reload failed; serving the previous snapshot", type(self).__name__)

    @classmethod
    async def open(cls, settings: Settings, reload_interval_s: float) -> Self:
        """One held in the Api replica (built from settings alone): what is published now, then
        kept watching for new versions."""
        watcher = cls(settings)
        await watcher._start_watching(reload_interval_s)
        return watcher

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


class Catalog(_Watcher):
    """api_catalog in memory, keyed by media_id, with each item's chapters and trickplay map.

    Each Api replica holds its own: a lookup is a dict read, far cheaper than a hop to another
    replica (a playback answer used to cost two), and the snapshot is small.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._snapshot = CatalogSnapshot()
        self._extras = PlaybackExtras()

    def _refresh(self) -> None:
        if table_version(self._settings, CATALOG_TABLE) != self._snapshot.version:
            self._snapshot = load_catalog(self._settings)
            log.info("api_catalog: now serving Delta version %s", self._snapshot.version)
        if extras_versions(self._settings) != self._extras.versions:
            self._extras = load_extras(self._settings)

    def version(self) -> int | None:
        return self._snapshot.version

    def get(self, media_id: str) -> dict[str, Any] | None:
        return self._snapshot.rows.get(media_id)

    def extras(self, media_id: str) -> dict[str, Any]:
        extras = self._extras
        return {"chapters": extras.chapters.get(media_id, []), "trickplay": extras.trickplay.get(media_id)}

    def listing(self, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """The catalog's size and one page of its rows by title (id as tie-break), for a picker."""
        rows = self._snapshot.rows  # already in that order
        start = min(offset, len(rows))  # clamped: islice refuses a start past sys.maxsize
        return len(rows), list(itertools.islice(rows.values(), start, start + limit))

    def titles(self, media_ids: list[str]) -> dict[str, str | None]:
        """Title of each id the catalog holds; ids it lacks are left out."""
        rows = self._snapshot.rows
        return {mid: rows[mid]["title"] for mid in media_ids if mid in rows}


class PipelineGauges(_Watcher):
    """Keeps /metrics' pipeline gauges (backlog, encode and ASR speed, events, drift) current:
    recomputed off the request path, only when one of their tables gets a new Delta version."""

    def _refresh(self) -> None:
        held = metrics.METRICS.pipeline.stats
        if held is None or pipeline_metrics.source_versions(self._settings) != held.versions:
            metrics.METRICS.pipeline.stats = pipeline_metrics.pipeline_stats(self._settings)


class ServedModel(NamedTuple):
    """The champion with the users it knows, swapped in as one object so they never mismatch."""

    champion: Champion
    known: frozenset[str]


class Recommender(_Watcher):
    """Ranks for users the champion knows; everyone else gets the published cold-start list.

    Each Api replica holds its own, like the Catalog: the champions are numpy models that rank a
    user in about half a millisecond, and when this was a deployment of its own the handle hop
    cost about 5 ms a request (bench_serving, one client). More Api replicas scale it out, each
    holding the model in memory (EASE: an items x items matrix), loaded off the event loop.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._model: ServedModel | None = None
        self._cold = ColdStart()
        self._evidence = NO_EVIDENCE
        self._qoe = NO_QOE

    def _refresh(self) -> None:
        if champion_version(self._settings) != self.model_version():
            self._load_champion()
        if table_version(self._settings, RECS_TABLE) != self._cold.version:
            self._cold = load_cold_start(self._settings)
            log.info("recs_topk: cold-start list from Delta version %s", self._cold.version)
        if table_version(self._settings, EVIDENCE_TABLE) != self._evidence.version:
            self._evidence = load_evidence(self._settings)
        if table_version(self._settings, QOE_TABLE) != self._qoe.version:
            self._qoe = load_title_qoe(self._settings)

    def _load_champion(self) -> None:
        try:
            champion = load_champion(self._settings)
        except LookupError:
            log.warning("no champion registered: every user gets the cold-start list")
            self._model = None
            return
        self._model = ServedModel(champion, champion.known_users)
        log.info("champion: now serving model version %s", champion.version)

    def model_version(self) -> str | None:
        return self._model.champion.version if self._model else None

    async def recommend(
        self,
        user_id: str,
        n: int,
        epsilon: float = 0.0,
        device_class: str | None = None,
        qoe_weight: float = 0.0,
    ) -> dict[str, Any]:
        """Up to n ranked items (media_id, score, rank, explored) with the model version and source.

        With qoe_weight > 0 the ranking (EXPLORE_CANDIDATES deep) is first re-ranked for
        device_class, titles that play badly there demoted (models/qoe/ranking.py). With epsilon > 0
        each slot is then, with that probability, given to a Thompson-sampled title from the rest
        of the ranking, judged by its completions.
        """
        model = self._model
        demoting = qoe_weight > 0 and device_class is not None
        depth = max(n, EXPLORE_CANDIDATES) if epsilon > 0 or demoting else n
        if model is not None and user_id in model.known:
            champion = model.champion
            # On the loop, not in a thread: ranking one user is under a millisecond of numpy, less
            # than a thread hand-off costs.
            ranked = champion.recommend([user_id], depth)
            version, source = champion.version, "champion"
        else:
            ranked = self._cold.ranking(user_id, depth)
            version, source = self._cold.model_version, "cold_start"
        if demoting:
            ranked = await asyncio.to_thread(demote, ranked, self._qoe.rows, device_class, qoe_weight)
        if epsilon > 0:
            seed = secrets.randbits(32)
            ranked = await asyncio.to_thread(explore_ranking, ranked, self._evidence.rows, n, epsilon, seed)
            items = ranked.select("media_id", "score", "rank", "explored").to_dicts()
        else:  # every ranking above comes best first; plain lists beat frame operations at this size
            top = ranked.head(n)
            columns = (top[name].to_list() for name in ("media_id", "score", "rank"))
            items = [
                {"media_id": media_id, "score": score, "rank": rank, "explored": False}
                for media_id, score, rank in zip(*columns, strict=True)
            ]
        return {"model_version": version, "source": source, "items": items}


@serve.deployment(**REPLICA_OPTIONS)
class Search(_Watcher):
    """The hybrid catalog index, rebuilt when one of its source tables gets a new version."""

    async def __init__(self, settings: Settings, reload_interval_s: float) -> None:
        import torch

        # Embedding a query takes 15 ms on one thread and 730 ms on two here: the replica shares
        # two cores with the others, and torch's threads would fight them.
        torch.set_num_threads(1)
        self._settings = settings
        self._index: CatalogIndex | None = None
        self._versions: tuple[int | None, ...] = ()
        await self._start_watching(reload_interval_s)

    def _refresh(self) -> None:
        versions = tuple(table_version(self._settings, name) for name in SOURCE_TABLES)
        if versions != self._versions:  # read before building: a write meanwhile triggers a rebuild
            index = CatalogIndex.from_lake(self._settings)
            index.search("warm up", 1)  # loads the embedding model now, not on a caller's time
            self._index, self._versions = index, versions
            log.info("search: indexed %d items at versions %s", len(index), versions)

    async def search(
        self, query: str, n: int, filters: Filters, trace: tracing.Carrier | None = None
    ) -> list[dict[str, Any]]:
        with tracing.span("Search.search", parent=trace, n=n):
            index = self._index
            if index is None:
                return []
            hits = await asyncio.to_thread(index.search, query, n, filters)
            return [asdict(hit) for hit in hits]


@serve.deployment(**REPLICA_OPTIONS)
class Similar(_Watcher):
    """Content + co-watch neighbours, rebuilt when text_embeddings or co_watch changes."""

    async def __init__(self, settings: Settings, reload_interval_s: float) -> None:
        self._settings = settings
        self._index = SimilarIndex()
        self._versions: tuple[int | None, ...] = ()
        await self._start_watching(reload_interval_s)

    def _refresh(self) -> None:
        if tuple(table_version(self._settings, name) for name in SIMILAR_TABLES) == self._versions:
            return
        embeddings_version, embeddings = read_versioned(
            self._settings, "text_embeddings", ["media_id", "embedding"]
        )
        co_watch_version, co_watch = read_versioned(
            self._settings, "co_watch", ["media_a", "media_b", "weight"]
        )
        self._index = SimilarIndex.build(embeddings, co_watch)
        self._versions = (embeddings_version, co_watch_version)

    async def similar(
        self, media_id: str, n: int, trace: tracing.Carrier | None = None
    ) -> list[dict[str, Any]]:
        with tracing.span("Similar.similar", parent=trace, n=n):
            return self._index.similar(media_id, n)


@serve.deployment(**WRITER_OPTIONS)
class EventWriter:
    """POST /events' writer: group commits through ingest_events, then hourly_stats for their hours."""

    async def __init__(self, settings: Settings, flush_interval_s: float, max_rows: int) -> None:
        self._buffer = EventBuffer(
            functools.partial(ingest_batches, settings),
            functools.partial(refresh_hours, settings),
            flush_interval_s,
            max_rows,
        )

    async def add(self, rows: list[dict[str, Any]], trace: tracing.Carrier | None = None) -> dict[str, int]:
        """Buffer rows and answer once they are written (the span covers the wait for the flush)."""
        with tracing.span("EventWriter.add", parent=trace, rows=len(rows)):
            return asdict(await self._buffer.add(rows))

    def check_health(self) -> None:
        if not self._buffer.running:
            raise RuntimeError("EventWriter: flush loop stopped")

    async def __del__(self) -> None:
        """Serve's graceful-shutdown hook (after the drain): write what is still buffered."""
        await self._buffer.close()


api = FastAPI(
    title="Streamlake API",
    description="Playback, search, recommendations and event ingest over the published lake snapshots. "
    "Routes other than /health, /metrics, /hls (signed URLs) and /images take "
    "`Authorization: Bearer <token>`.",
)
# Bearer tokens, never cookies, carry identity, so any origin may call (a page still needs a token):
# the player page can live on its own host. Retry-After is exposed so it can honour a 429.
api.add_middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["GET", "POST"],
    allow_headers=["Authorization", "Content-Type", "Range"],
    expose_headers=["Retry-After"],
)
api.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
api.add_middleware(Observe)  # outermost: times everything above, 413s and CORS answers included


UserId = Annotated[
    str,
    PathParam(min_length=1, max_length=64, pattern=USER_ID, description="Letters, digits, '_' or '-'."),
]
MediaId = Annotated[str, PathParam(pattern=MEDIA_ID, description="16 lowercase hex characters.")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _not_found(media_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"unknown media_id '{media_id}'")


@serve.deployment(**REPLICA_OPTIONS)
@serve.ingress(api)
class Api:
    """HTTP routes: who is calling and how often; the work happens behind the handles."""

    async def __init__(
        self,
        settings: Settings,
        rates: Mapping[str, Rate],
        reload_interval_s: float,
        search: DeploymentHandle,
        similar: DeploymentHandle,
        events: DeploymentHandle,
    ) -> None:
        self._packaged = settings.packaged
        self._api_secret = tokens.api_secret(settings)
        self._hls_secret = hls_signing.hls_secret(settings)
        self._limiter = rate_limiter(settings.rate_limit_redis, rates)
        tracing.tracer()  # a bad STREAMLAKE_OTEL_EXPORTER fails the deploy here, not every request
        self._catalog = await Catalog.open(settings, reload_interval_s)
        self._pipeline = await PipelineGauges.open(settings, reload_interval_s)
        self._recommender = await Recommender.open(settings, reload_interval_s)
        self._search = search
        self._similar = similar
        self._events = events
        self._scripts = {"player.js": STATIC_DIR / "player.js", "hls.min.js": settings.hls_js}
        if not settings.hls_js.is_file():
            log.warning("no hls.js at %s: the player page cannot play until `make install`", settings.hls_js)

    def check_health(self) -> None:
        self._catalog.check_health()
        self._recommender.check_health()
        self._pipeline.check_health()

    def _caller(self, credentials: HTTPAuthorizationCredentials | None) -> tokens.Claims:
        """The token's claims, one request taken from the caller's bucket; 401/429 otherwise."""
        claims = self._claims(credentials)
        if claims is None:
            raise HTTPException(status_code=401, detail="missing bearer token", headers=UNAUTHORIZED)
        try:
            decision = self._limiter.check(claims.sub, claims.tier)
        except KeyError:
            raise HTTPException(status_code=403, detail=f"unknown tier '{claims.tier}'") from None
        if not decision.allowed:
            metrics.METRICS.rate_limited.labels(claims.tier).inc()
            headers = {"Retry-After": decision.retry_after_header}
            raise HTTPException(status_code=429, detail="rate limit exceeded", headers=headers)
        return claims

    def _claims(self, credentials: HTTPAuthorizationCredentials | None) -> tokens.Claims | None:
        """None without a token; a 401 for one that does not verify (forged, expired, malformed)."""
        if credentials is None:
            return None
        try:
            return tokens.verify(credentials.credentials, self._api_secret)
        except tokens.TokenError as err:
            raise HTTPException(status_code=401, detail=str(err), headers=UNAUTHORIZED) from None

    async def _row(self, media_id: str) -> dict[str, Any]:
        row = self._catalog.get(media_id)
        if row is None:
            raise _not_found(media_id)
        return row

    @api.get("/health")
    async def health(self) -> Health:
        catalog_version = self._catalog.version()
        model_version = self._recommender.model_version()
        return Health(status="ok", catalog_version=catalog_version, model_version=model_version)

    @api.get("/metrics", response_class=Response, responses={200: {"content": {metrics.CONTENT_TYPE: {}}}})
    async def prometheus(self) -> Response:
        """Prometheus text format: request latency per route, 429s per tier, the served model, and the
        pipeline's gauges (kept current by PipelineGauges, so a scrape reads no table)."""
        registry = metrics.METRICS
        registry.set_model_version(self._recommender.model_version())
        return Response(registry.render(), media_type=metrics.CONTENT_TYPE)

    @api.get("/", include_in_schema=False)
    @api.get("/player", include_in_schema=False)
    async def player(self) -> FileResponse:
        """The player page, served on the API's own origin: Chromium blocks pages from other origins
        from reaching /hls on a private address such as 127.0.0.1."""
        return FileResponse(STATIC_DIR / "player.html", media_type="text/html", headers=PAGE_HEADERS)

    @api.get("/static/{name}", include_in_schema=False)
    async def static(self, name: str) -> FileResponse:
        """The page's scripts: player.js and hls.js (from node_modules: nothing is fetched from a CDN)."""
        file = self._scripts.get(name)
        if file is None:
            raise HTTPException(status_code=404, detail="no such script")
        if not file.is_file():
            raise HTTPException(status_code=503, detail=f"{name} is missing at {file}: run `make install`")
        return FileResponse(file, media_type="text/javascript", headers=PAGE_HEADERS)

    @api.get("/media")
    async def media_list(
        self,
        credentials: Credentials,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> MediaList:
        """The catalog by title, a page at a time: what a player offers to choose from."""
        self._caller(credentials)
        total, rows = self._catalog.listing(offset, limit)
        items = [
            MediaSummary(**row, poster_url=playback.image_url(row["media_id"], row["poster"])) for row in rows
        ]
        return MediaList(total=total, items=items)

    @api.get("/media/{media_id}")
    async def media(self, media_id: MediaId, credentials: Credentials) -> MediaItem:
        """The catalog row; renditions are those the caller's tier may play."""
        claims = self._caller(credentials)
        row = await self._row(media_id)
        return MediaItem(
            **{**row, "renditions": playback.playable(claims.tier, "any", row["renditions"] or [])}
        )

    @api.get("/media/{media_id}/playback")
    async def media_playback(
        self,
        media_id: MediaId,
        credentials: Credentials,
        device: Annotated[playback.Device, Query(description="Keeps the codecs this class decodes.")] = "any",
    ) -> Playback:
        """A signed master playlist URL for the caller, with renditions, subtitles, chapters, images."""
        claims = self._caller(credentials)
        row = await self._row(media_id)
        extras = self._catalog.extras(media_id)
        grant = playback.grant(media_id, claims.sub, claims.tier, self._hls_secret)
        trickplay = extras["trickplay"]
        trickplay_url = playback.image_url(media_id, trickplay and trickplay["path"])
        base = f"{hls_signing.URL_ROOT}{media_id}/"
        subtitles = [
            SubtitleTrack(
                lang=s["lang"], url=f"{base}{playback.SUBTITLES_PREFIX}{s['lang']}.vtt?{grant.query}"
            )
            for s in row["subtitles"] or []
            if s["format"] == "webvtt" and s["lang"]
        ]
        return Playback(
            media_id=media_id,
            title=row["title"],
            duration_s=row["duration_s"],
            tier=claims.tier,
            device=device,
            master_url=f"{base}{playback.MASTER}?{playback.master_query(grant, device)}",
            expires_at=grant.expires_at,
            renditions=[
                Rendition(**r) for r in playback.playable(claims.tier, device, row["renditions"] or [])
            ],
            subtitles=subtitles,
            chapters=[Chapter(**c) for c in extras["chapters"]],
            poster_url=playback.image_url(media_id, row["poster"]),
            trickplay=Trickplay(**trickplay, url=trickplay_url) if trickplay_url else None,
        )

    @api.get("/hls/{media_id}/{path:path}", response_class=Response)
    async def hls(
        self,
        media_id: MediaId,
        path: str,
        request: Request,
        credentials: Credentials,
        device: Annotated[
            playback.Device, Query(description="A master lists only the variants this class decodes.")
        ] = "any",
    ) -> Response:
        """Playlists and segments of a package, for a signed URL (`exp`, `uid`, `sig`, `tier`).

        Playlists come back with the grant on every URI; a master lists only the variants the tier
        may play and the device decodes (the device narrows, unsigned: it grants nothing). A bearer
        token, when sent, must be the signed user's.
        """
        claims = self._claims(credentials)
        try:
            url_path = f"{hls_signing.URL_ROOT}{media_id}/{path}"
            grant = playback.check(url_path, request.url.query, claims and claims.sub, self._hls_secret)
            file = hls_signing.safe_media_path(self._packaged, media_id, path)
        except hls_signing.HlsAuthError as err:
            raise HTTPException(status_code=403, detail=str(err)) from None
        renditions = (await self._row(media_id))["renditions"] or []
        allowed = playback.allowed_names(grant.tier, renditions)
        if not playback.in_grant(path, allowed):
            raise HTTPException(status_code=403, detail=f"not playable at tier '{grant.tier}'")
        if not file.is_file():
            raise HTTPException(status_code=404, detail="no such file in the package")
        media_type = HLS_TYPES.get(file.suffix, "application/octet-stream")
        headers = {"Cache-Control": "private, max-age=60"}
        if file.suffix != ".m3u8":
            return FileResponse(file, media_type=media_type, headers=headers)
        text = await asyncio.to_thread(file.read_text)
        if path == playback.MASTER:
            text = playback.filter_master(text, playback.allowed_names(grant.tier, renditions, device))
        return Response(
            hls_signing.rewrite_playlist(text, grant.query), media_type=media_type, headers=headers
        )

    @api.get("/images/{media_id}/{path:path}", response_class=FileResponse)
    async def images(self, media_id: MediaId, path: str) -> FileResponse:
        """Posters, shot stills and trickplay sprites with their WebVTT map (public catalog art)."""
        try:
            file = playback.image_file(self._packaged, media_id, path)
        except hls_signing.BadPath as err:
            raise HTTPException(status_code=403, detail=str(err)) from None
        if not file.is_file():
            raise HTTPException(status_code=404, detail="no such image")
        return FileResponse(file, headers={"Cache-Control": "public, max-age=3600"})

    @api.get("/media/{media_id}/similar")
    async def similar(
        self, media_id: MediaId, credentials: Credentials, k: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> SimilarItems:
        """Items like this one by content (text embeddings) and by who watched both (co_watch)."""
        self._caller(credentials)
        await self._row(media_id)
        with tracing.span("similar.similar", k=k):
            ranked = await self._similar.similar.remote(media_id, k * OVERFETCH, tracing.context_carrier())
        titles = self._catalog.titles([item["media_id"] for item in ranked])
        items = [
            SimilarItem(**item, title=titles[item["media_id"]])
            for item in ranked
            if item["media_id"] in titles
        ]
        return SimilarItems(media_id=media_id, items=items[:k])

    @api.get("/search")
    async def search(
        self,
        credentials: Credentials,
        q: Annotated[str, Query(min_length=1, max_length=256, description="Words, names, or a description.")],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        genre: Annotated[list[str], Query(max_length=10, description="Any of these genres.")] = [],  # noqa: B006
        min_duration_s: Annotated[float | None, Query(ge=0, le=1e6)] = None,
        max_duration_s: Annotated[float | None, Query(ge=0, le=1e6)] = None,
    ) -> SearchResults:
        """Hybrid catalog search: BM25 and MiniLM rankings fused by reciprocal rank."""
        self._caller(credentials)
        if min_duration_s is not None and max_duration_s is not None and min_duration_s > max_duration_s:
            raise HTTPException(status_code=422, detail="min_duration_s must not exceed max_duration_s")
        filters = Filters(tuple(genre), min_duration_s, max_duration_s)
        with tracing.span("search.search", k=k):
            hits = await self._search.search.remote(q, k * OVERFETCH, filters, tracing.context_carrier())
        titles = self._catalog.titles([hit["media_id"] for hit in hits])
        items = [SearchHit(**hit) for hit in hits if hit["media_id"] in titles][:k]
        return SearchResults(query=q, items=items)

    @api.get("/recommendations/{user_id}")
    async def recommendations(
        self,
        user_id: UserId,
        credentials: Credentials,
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        explore: Annotated[
            float, Query(ge=0.0, le=1.0, description="Share of slots given to Thompson-sampled titles.")
        ] = 0.0,
        device_class: Annotated[
            DeviceClass | None, Query(description="The caller's device class, for QoE demotion.")
        ] = None,
        qoe_weight: Annotated[
            float,
            Query(ge=0.0, le=1.0, description="How far titles that play badly on device_class are demoted."),
        ] = 0.0,
    ) -> Recommendations:
        """Top-k for user_id (the caller's own); ranks are renumbered after items missing from the
        catalog are dropped."""
        if self._caller(credentials).sub != user_id:
            raise HTTPException(status_code=403, detail="recommendations are only given to their user")
        with tracing.span("recommender.recommend", k=k, explore=explore, qoe_weight=qoe_weight):
            ranked = await self._recommender.recommend(
                user_id, k * OVERFETCH, explore, device_class, qoe_weight
            )
        titles = self._catalog.titles([item["media_id"] for item in ranked["items"]])
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

    @api.post("/events", status_code=202)
    async def events(self, batch: EventBatch, credentials: Credentials) -> EventCounts:
        """Stores the caller's view events exactly once per event_id; answers once they are durable.

        Invalid rows are rejected one by one (kept with the reason), never the whole batch.
        """
        sub = self._caller(credentials).sub
        if any(isinstance(row.get("user_id"), str) and row["user_id"] != sub for row in batch.events):
            raise HTTPException(status_code=403, detail="events may only be sent for the caller's user_id")
        try:
            with tracing.span("events.add", rows=len(batch.events)):
                counts = await self._events.add.remote(batch.events, tracing.context_carrier())
        except Exception as err:
            log.warning("events not stored: %s", err)
            raise HTTPException(
                status_code=503, detail="events not stored; retry", headers={"Retry-After": "1"}
            ) from None
        return EventCounts(**counts)


def build_app(
    settings: Settings,
    reload_interval_s: float = RELOAD_INTERVAL_S,
    rates: Mapping[str, Rate] = DEFAULT_RATES,
    flush_interval_s: float = FLUSH_INTERVAL_S,
) -> Application:
    """The whole API as one application; deployments get their configuration here, at bind time."""
    return Api.bind(
        settings,
        dict(rates),
        reload_interval_s,
        Search.bind(settings, reload_interval_s),
        Similar.bind(settings, reload_interval_s),
        EventWriter.bind(settings, flush_interval_s, FLUSH_MAX_ROWS),
    )


app = build_app(get_settings())
