"""Hybrid catalog search: BM25 finds title and transcript words, MiniLM finds paraphrases, filters
apply before ranking, and any user string is a harmless query."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl
import pytest

from models.analysis.text_embeddings import embed_texts
from models.lake.schemas import ALL_TABLES
from models.lake.tables import upsert
from models.search.catalog_search import (
    MAX_QUERY_CHARS,
    RRF_K,
    CatalogIndex,
    Filters,
    catalog_frame,
    tokenize,
)
from models.settings import Settings

KNIFE, BIKES, JAZZ, SKY, WAVES, SPANISH = (f"{n:016x}" for n in range(1, 7))
CATALOG = {
    KNIFE: ("Knife skills for beginners", "A chef shows how to dice onions and julienne carrots.", 300.0),
    BIKES: ("Downhill mountain biking", "Riders race down steep forest trails.", 120.0),
    JAZZ: ("Jazz piano lesson", "Swing rhythms and chord voicings at the keyboard.", 600.0),
    SKY: ("The night sky", "Stars, planets and galaxies through a telescope.", 900.0),
    WAVES: ("Ocean waves", "Surf breaking on a rocky coast at dawn.", 60.0),
    SPANISH: ("Learning Spanish", "Greetings and numbers for travellers.", None),
}
GENRES = {
    KNIFE: ["cooking"],
    BIKES: ["sport"],
    JAZZ: ["music"],
    SKY: ["documentary"],
    WAVES: ["nature", "documentary"],
}  # SPANISH has no media_content row
# Out of order on purpose: segments are joined by segment_id.
TRANSCRIPT = [(JAZZ, 1, "then the left hand walks a bassline"), (JAZZ, 0, "we start")]


def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    items = pl.DataFrame(
        [
            {"media_id": mid, "title": t, "description": d, "tags": ["demo"], "duration_s": s}
            for mid, (t, d, s) in CATALOG.items()
        ]
    )
    transcripts = pl.DataFrame(TRANSCRIPT, schema=["media_id", "segment_id", "text"], orient="row")
    content = pl.DataFrame({"media_id": list(GENRES), "genres": list(GENRES.values())})
    return items, transcripts, content


def embeddings_for(catalog: pl.DataFrame, embed=embed_texts) -> pl.DataFrame:
    texts = [f"{r['title']}. {r['description']} {r['transcript'] or ''}" for r in catalog.to_dicts()]
    return pl.DataFrame({"media_id": catalog["media_id"], "embedding": embed(texts).tolist()})


@pytest.fixture(scope="module")
def catalog() -> pl.DataFrame:
    return catalog_frame(*frames())


@pytest.fixture(scope="module")
def minilm() -> Iterator[None]:
    """The real MiniLM, loaded once for the module (seconds), then each query costs milliseconds.

    One torch thread, as a Serve replica gets: a one-sentence query is fastest on one, and two on a
    busy two-core machine spin against each other (measured 15 ms against 730 ms per query).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    embed_texts(["warm up"])
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def index(minilm: None, catalog: pl.DataFrame) -> CatalogIndex:
    return CatalogIndex(catalog, embeddings_for(catalog))


def ids(hits: Sequence) -> list[str]:
    return [hit.media_id for hit in hits]


def test_catalog_frame_joins_transcripts_in_order_and_genres(catalog: pl.DataFrame) -> None:
    rows = {row["media_id"]: row for row in catalog.to_dicts()}
    assert rows[JAZZ]["transcript"] == "we start then the left hand walks a bassline"
    assert rows[KNIFE]["transcript"] is None
    assert rows[WAVES]["genres"] == ["nature", "documentary"]
    assert rows[SPANISH]["genres"] is None


def test_tokenize_folds_case_and_unicode_and_drops_stop_words() -> None:
    assert tokenize("The CAFÉ ｆｕｌｌｗｉｄｔｈ, naïve_x 4K!") == ["café", "fullwidth", "naïve", "x", "4k"]
    assert tokenize(None) == []


def test_title_words_rank_the_item_first(index: CatalogIndex) -> None:
    hits = index.search("piano")
    assert hits[0].media_id == JAZZ
    assert hits[0].matched_by == ("bm25", "vector")
    assert hits[0].score == pytest.approx(2 / (RRF_K + 1))  # first in both lists


def test_transcript_words_are_searchable(index: CatalogIndex) -> None:
    hits = index.search("bassline")
    assert hits[0].media_id == JAZZ and hits[0].bm25_rank == 1


def test_a_paraphrase_is_found_by_the_vector_side(index: CatalogIndex) -> None:
    """No word of the query occurs in the catalog: only the embedding can find the knife lesson."""
    hits = index.search("slicing vegetables in a kitchen")
    assert hits[0].media_id == KNIFE
    assert hits[0].matched_by == ("vector",) and hits[0].bm25_rank is None
    assert index.search("astronomy")[0].media_id == SKY


def test_filters_apply_before_ranking(index: CatalogIndex) -> None:
    assert ids(index.search("piano", filters=Filters(genres=("Sport",)))) == []
    documentaries = index.search("ocean waves stars", filters=Filters(genres=("DOCUMENTARY", "unknown")))
    assert set(ids(documentaries)) == {SKY, WAVES}
    assert ids(index.search("waves stars", filters=Filters(max_duration_s=100))) == [WAVES]
    long = index.search("waves stars", filters=Filters(min_duration_s=100, max_duration_s=1000))
    assert ids(long)[0] == SKY and WAVES not in ids(long)
    # An item of unknown duration fails any duration bound but passes without one.
    assert SPANISH in ids(index.search("spanish"))
    assert SPANISH not in ids(index.search("spanish", filters=Filters(min_duration_s=0)))


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE media_items; --",
        '" OR 1=1 --',
        "(a+)+$ [^ \\ .* ${jndi:ldap://x} {{7*7}} %s%n",
        "\x00\n\r\t<script>alert(1)</script>",
        "piano " * 200_000,
        "",
        "   ",
        "%%%",
        "🎹🎷",
    ],
)
def test_injection_like_queries_return_normally(index: CatalogIndex, query: str) -> None:
    started = time.perf_counter()
    hits = index.search(query)
    assert time.perf_counter() - started < 1.0
    assert all(hit.media_id in CATALOG for hit in hits)


def test_huge_queries_are_cut_before_anything_reads_them(catalog: pl.DataFrame) -> None:
    seen: list[str] = []

    def embed(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return np.ones((len(texts), 2), dtype=np.float32)

    vectors = pl.DataFrame({"media_id": [KNIFE], "embedding": [[1.0, 0.0]]})
    CatalogIndex(catalog, vectors, embed).search("x" * 10_000_000)
    assert [len(text) for text in seen] == [MAX_QUERY_CHARS]


def test_without_embeddings_only_bm25_runs(catalog: pl.DataFrame) -> None:
    def embed(texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("no item has a vector: the query must not be embedded")

    empty = pl.DataFrame(schema={"media_id": pl.String, "embedding": pl.List(pl.Float32)})
    hits = CatalogIndex(catalog, empty, embed).search("jazz")
    assert ids(hits) == [JAZZ] and hits[0].matched_by == ("bm25",)
    assert CatalogIndex(catalog.clear(), empty, embed).search("jazz") == []


def test_items_without_a_vector_are_never_vector_matches(catalog: pl.DataFrame) -> None:
    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.array([[1.0, 0.0]], dtype=np.float32)

    vectors = pl.DataFrame({"media_id": [SKY], "embedding": [[2.0, 0.0]]})  # re-normalised to unit
    hits = CatalogIndex(catalog, vectors, embed).search("anything at all")
    assert [(hit.media_id, hit.matched_by) for hit in hits] == [(SKY, ("vector",))]


def _row(table: str, **values: object) -> dict:
    return {name: values.get(name) for name in ALL_TABLES[table].schema.names}


@pytest.mark.usefixtures("minilm")
def test_from_lake_reads_the_published_tables(lake: Settings, catalog: pl.DataFrame) -> None:
    assert CatalogIndex.from_lake(lake).search("jazz") == []  # nothing published yet
    items, transcripts, content = frames()
    upsert(lake, "media_items", [_row("media_items", **row) for row in items.to_dicts()])
    upsert(lake, "transcripts", [_row("transcripts", **row) for row in transcripts.to_dicts()])
    upsert(lake, "media_content", [_row("media_content", **row) for row in content.to_dicts()])
    vectors = embeddings_for(catalog).with_columns(model=pl.lit("all-MiniLM-L6-v2"))
    other = pl.DataFrame({"media_id": [KNIFE], "model": ["another-model"], "embedding": [[1.0, 0.0]]})
    upsert(lake, "text_embeddings", [_row("text_embeddings", **r) for r in vectors.to_dicts()])
    index = CatalogIndex.from_lake(lake)
    assert len(index) == len(CATALOG)
    assert index.search("bassline")[0].media_id == JAZZ
    assert index.search("slicing vegetables in a kitchen")[0].media_id == KNIFE
    # Vectors of another model are not comparable with the query's: they are left out.
    upsert(lake, "text_embeddings", [_row("text_embeddings", **r) for r in other.to_dicts()])
    assert KNIFE not in ids(CatalogIndex.from_lake(lake).search("slicing vegetables in a kitchen"))
