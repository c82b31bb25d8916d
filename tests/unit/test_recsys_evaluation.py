"""Evaluation protocols, the seen-item check, tuning and the catalog, on hand-sized data."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from models.recsys import catalog
from models.recsys.base import Recommender
from models.recsys.evaluation import (
    ML100K_PROTOCOL,
    Protocol,
    SeenItemLeak,
    check_no_seen_items,
    code_version,
    cold_start_items,
    evaluate,
    fit_and_evaluate,
    leave_last_out,
    random_per_user,
    ranking_metrics,
    split_cold_start_items,
    split_leave_last_out,
)
from models.recsys.itemknn import ItemKNN
from models.recsys.popularity import TopPop
from models.recsys.tuning import Tuner

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def frame(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(user, item, minutes after T0) -> interactions with weight 1."""
    return pl.DataFrame(
        [(u, m, 1.0, T0 + timedelta(minutes=t)) for u, m, t in rows],
        schema={
            "user_id": pl.String,
            "media_id": pl.String,
            "weight": pl.Float64,
            "last_ts": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def communities(n_a: int = 6, n_b: int = 10) -> pl.DataFrame:
    """A users watch A1..A5, B users watch B1..B5 (more of them, so B items are more popular)."""
    rows = [(f"a{u}", f"A{i}", u + i) for u in range(n_a) for i in range(1, 6)]
    rows += [(f"b{u}", f"B{i}", u + i) for u in range(n_b) for i in range(1, 6)]
    return frame(rows)


# --- protocols --------------------------------------------------------------------------------


def test_protocol_sentences_name_the_seed_and_k() -> None:
    assert random_per_user(0.25, 42, 10) == ML100K_PROTOCOL
    assert ML100K_PROTOCOL.name == "random_per_user_75_25"
    assert ML100K_PROTOCOL.describe() == (
        "per-user random 75/25, seed 42, all items ranked, the user's train items removed, top-10"
    )
    assert leave_last_out(seed=3, k=5).describe().startswith("leave-last-out by last_ts")
    assert "seed 3" in leave_last_out(seed=3, k=5).describe()
    assert cold_start_items(0.2, seed=7).name == "cold_start_items_20"
    assert ML100K_PROTOCOL.params() == {
        "protocol": ML100K_PROTOCOL.describe(),
        "protocol_name": "random_per_user_75_25",
        "seed": 42,
        "k": 10,
    }
    with pytest.raises(ValueError, match="unknown protocol"):
        Protocol("temporal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction"):
        random_per_user(1.0)


def test_leave_last_out_takes_the_latest_row_and_breaks_ties_by_media_id() -> None:
    data = frame(
        [
            ("u1", "m1", 1),
            ("u1", "m2", 5),  # u1's latest
            ("u1", "m3", 3),
            ("u2", "m1", 9),
            ("u2", "m2", 9),  # tie at the latest time: the greater media_id (m2) is "last"
            ("u3", "m3", 1),  # a single interaction stays in train
        ]
    )
    train, test = split_leave_last_out(data)
    assert test.select("user_id", "media_id").rows() == [("u1", "m2"), ("u2", "m2")]
    assert train.height == 4 and "u3" in train["user_id"].to_list()
    again_train, again_test = split_leave_last_out(data.reverse())
    assert again_train.equals(train) and again_test.equals(test)


def test_cold_start_holds_out_whole_items_seeded() -> None:
    data = communities()
    train, test = split_cold_start_items(data, item_fraction=0.2, seed=1)
    cold = set(test["media_id"])
    assert len(cold) == 2  # round(10 * 0.2)
    assert cold.isdisjoint(train["media_id"])  # every interaction of a cold item is in test
    assert test.height == data.filter(pl.col("media_id").is_in(list(cold))).height
    assert split_cold_start_items(data.reverse(), 0.2, seed=1)[1].equals(test)
    draws = {frozenset(split_cold_start_items(data, 0.2, seed=s)[1]["media_id"]) for s in range(6)}
    assert len(draws) > 1


# --- the evaluator ----------------------------------------------------------------------------


class Leaky(TopPop):
    """Recommends popular items without removing what the user already watched."""

    name = "leaky"

    def recommend(self, user_ids: list[str], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        return super().recommend(user_ids, k, exclude_seen=False)


def test_a_model_that_recommends_seen_items_fails_the_evaluation() -> None:
    protocol = random_per_user(0.2, seed=1, k=3)
    split = protocol.split(communities())
    with pytest.raises(
        SeenItemLeak, match=r"for 10 users repeat their training items \(e\.g\. user 'b0': item 'B"
    ):
        fit_and_evaluate(Leaky(), split)
    fit_and_evaluate(TopPop(), split)  # the same list with seen items removed passes


def test_check_no_seen_items_names_users_and_items() -> None:
    train = frame([("u1", "x", 0), ("u2", "y", 0)])
    recs = pl.DataFrame({"user_id": ["u1", "u1", "u2"], "rank": [1, 2, 1], "media_id": ["x", "z", "z"]})
    with pytest.raises(SeenItemLeak, match=r"1 recommendations for 1 users.*user 'u1': item 'x'"):
        check_no_seen_items(train, recs)
    twice = pl.DataFrame({"user_id": ["u2", "u2"], "rank": [1, 2], "media_id": ["z", "z"]})
    with pytest.raises(SeenItemLeak, match=r"recommended twice.*user 'u2': item 'z'"):
        check_no_seen_items(train, twice)


def test_ranking_metrics_by_hand() -> None:
    truth = pl.DataFrame({"user_id": ["u1", "u1", "u2"], "media_id": ["a", "b", "c"]})
    recs = pl.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2"], "rank": [1, 2, 1, 2], "media_id": ["b", "x", "y", "z"]}
    )
    got = ranking_metrics(truth, recs, k=2, n_items=8)
    # u1: hit at rank 1 of |truth| 2 -> DCG 1, IDCG 1 + 1/log2(3); u2: nothing.
    assert got["ndcg_at_2"] == pytest.approx((1 / (1 + 1 / math.log2(3))) / 2)
    assert got["precision_at_2"] == pytest.approx((1 / 2) / 2)
    assert got["recall_at_2"] == pytest.approx((1 / 2) / 2)
    assert got["map_at_2"] == pytest.approx((1 / 2) / 2)
    assert got["coverage"] == pytest.approx(4 / 8)


class Oracle(Recommender):
    """Scores items by a fixed table, including items absent from train (as a content model can)."""

    name = "oracle"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def fit(self, train: pl.DataFrame) -> Oracle:
        super().fit(train)
        self._pairs = train.select("user_id", "media_id")
        return self

    def _score(self, seen: sparse.csr_matrix) -> np.ndarray:
        raise NotImplementedError("recommend is overridden")

    def recommend(self, user_ids: list[str], k: int, exclude_seen: bool = True) -> pl.DataFrame:
        items = pl.DataFrame({"media_id": list(self.scores), "score": list(self.scores.values())})
        recs = pl.DataFrame({"user_id": user_ids}).join(items, how="cross")
        if exclude_seen:
            recs = recs.join(self._pairs, on=["user_id", "media_id"], how="anti")
        return (
            recs.sort(["user_id", "score"], descending=[False, True])
            .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id"))
            .filter(pl.col("rank") <= k)
            .select("user_id", "rank", "media_id", "score")
        )


def test_cold_start_scores_only_the_held_out_items() -> None:
    train = frame([("u1", "w1", 0), ("u1", "w2", 0), ("u2", "w1", 0)])
    test = frame([("u1", "c1", 1), ("u2", "c2", 1), ("u2", "c1", 1)])
    # The oracle ranks warm w2 first, then c2, c1: for cold-start only c2 (rank 1) and c1 (rank 2) count.
    model = Oracle({"w2": 9.0, "c2": 5.0, "c1": 4.0, "w1": 1.0}).fit(train)
    got = evaluate(model, train, test, cold_start_items(0.5, seed=0, k=1))
    # u1 truth {c1}: top-1 of the cold items is c2 -> 0; u2 truth {c1, c2}: c2 at rank 1 -> 1.
    assert got["cold_ndcg_at_1"] == pytest.approx(0.5)
    assert got["cold_recall_at_1"] == pytest.approx((0 + 1 / 2) / 2)
    assert got["cold_coverage"] == pytest.approx(1 / 2)
    # A collaborative model knows nothing of c1, c2: it scores 0, honestly.
    pop = TopPop().fit(train)
    assert evaluate(pop, train, test, cold_start_items(0.5, k=1))["cold_ndcg_at_1"] == 0.0


def test_fit_and_evaluate_carries_protocol_seed_hash_and_code_version() -> None:
    split = random_per_user(0.2, seed=5, k=3).split(communities())
    result = fit_and_evaluate(ItemKNN(neighbours=4, shrink=0.0), split).as_dict()
    assert result["protocol"] == split.protocol.describe() and result["seed"] == 5 and result["k"] == 3
    assert len(result["dataset_hash"]) == 64 and result["code_version"] == code_version()
    assert result["metrics"]["ndcg_at_3"] == pytest.approx(1.0)  # communities are perfectly separable
    assert result["params"] == {"neighbours": 4, "shrink": 0.0}
    loo = fit_and_evaluate(TopPop(), leave_last_out(seed=5).split(communities())).as_dict()
    assert loo["dataset_hash"] == result["dataset_hash"]  # the same rows, another split
    assert loo["split_hash"] != result["split_hash"]


# --- catalog and tuning -----------------------------------------------------------------------


def test_catalog_candidates_start_from_the_defaults_and_respect_the_budget() -> None:
    knn = catalog.get("itemknn")
    every = knn.candidates(max_trials=100, seed=0)
    assert every[0] == dict(knn.defaults) and len(every) == 6  # the 3x2 grid holds the defaults once
    few = knn.candidates(max_trials=3, seed=0)
    assert len(few) == 3 and few[0] == dict(knn.defaults)
    assert few == knn.candidates(max_trials=3, seed=0)
    assert catalog.get("toppop").candidates(8, 0) == [{}]
    assert catalog.BASELINES == ("toppop", "itemknn")
    missing = catalog.Entry("ghost", "models.recsys.no_such_module:Ghost")
    assert not missing.available()
    assert [e.name for e in catalog.available(["toppop", "itemknn"])] == ["toppop", "itemknn"]
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        catalog.get("nope")


class Spy(ItemKNN):
    """Records the rows each fit saw."""

    seen_rows: list[pl.DataFrame] = []  # noqa: RUF012

    def fit(self, train: pl.DataFrame) -> Spy:
        Spy.seen_rows.append(train)
        return super().fit(train)


def test_tuning_never_sees_the_test_part_and_picks_by_validation() -> None:
    data = communities(8, 12)
    protocol = random_per_user(0.2, seed=3, k=3)
    split = protocol.split(data)
    entry = catalog.Entry(
        "spy",
        f"{__name__}:Spy",
        {"neighbours": 1, "shrink": 0.0},
        {"neighbours": (1, 4), "shrink": (0.0, 5.0)},
    )
    Spy.seen_rows = []
    logged = []
    best, trials = Tuner(entry, protocol, metric="ndcg_at_3", max_trials=8).search(split.train, logged.append)
    assert len(trials) == 4 and logged == trials
    test_pairs = split.test.select("user_id", "media_id")
    for rows in Spy.seen_rows:
        assert rows.join(test_pairs, on=["user_id", "media_id"], how="semi").is_empty()
        assert rows.height < split.train.height  # validation rows were carved out of train
    top = max(t.metrics["ndcg_at_3"] for t in trials)
    assert best == next(t.params for t in trials if t.metrics["ndcg_at_3"] == top)
    assert Tuner(catalog.get("toppop"), protocol).search(split.train) == ({}, [])


def test_entry_parse_and_quick_overrides() -> None:
    ease = catalog.get("ease")
    assert ease.parse({"model.l2": "250.0", "model.binary": "True", "other": "x"}) == {"l2": 250.0}
    hybrid = catalog.get("hybrid")
    assert hybrid.parse({"model.weight": "0.2", "model.collaborative": "ease"}) == {
        "weight": 0.2,
        "collaborative": "ease",
    }
    sasrec = catalog.get("sasrec")
    assert sasrec.quickened().defaults == {**sasrec.defaults, **sasrec.quick}
    assert ease.quickened() is ease


# --- datasets ---------------------------------------------------------------------------------


def test_ml100k_rows_become_rating_weighted_interactions_and_genre_embeddings() -> None:
    ratings = pl.DataFrame(
        {"user_id": ["2", "1"], "item_id": ["10", "20"], "rating": [1.0, 5.0], "ts": [T0, T0 + timedelta(1)]}
    )
    inter = catalog.ml100k_interactions(ratings)
    assert inter.columns == ["user_id", "media_id", "weight", "last_ts"]
    assert inter.select("user_id", "media_id", "last_ts").rows() == [
        ("1", "20", T0 + timedelta(1)),
        ("2", "10", T0),
    ]
    assert inter["weight"].to_list() == pytest.approx([5 / 3.5, 1 / 3.5])
    items = pl.DataFrame(
        {
            "item_id": ["10", "20", "30"],
            "title": ["x", "y", "z"],
            "release_year": [1995, 1971, None],
            "genres": [["Action", "Comedy"], ["Comedy"], []],
        }
    )
    emb = catalog.ml100k_item_embeddings(items)
    vectors = np.array(emb["embedding"].to_list())
    # columns: Action, Comedy, 1970s, 1990s; genres weigh 1, the decade 0.5, then unit length
    assert vectors[0] == pytest.approx(np.array([1, 1, 0, 0.5]) / 1.5)
    assert vectors[1] == pytest.approx(np.array([0, 1, 0.5, 0]) / math.sqrt(1.25))
    assert vectors[2] == pytest.approx(np.zeros(4))  # nothing known: scores 0 against everything
    assert catalog.embeddings_hash(emb) == catalog.embeddings_hash(emb.reverse())


def test_platform_training_set_discounts_by_the_exposure_of_the_hour_before() -> None:
    """Feast gives each interaction the item's viewers in the last complete hour before it began."""
    import tempfile
    import warnings

    from models.features import store
    from models.lake.tables import upsert
    from models.settings import get_settings

    def hour(h: float) -> datetime:
        return T0 + timedelta(hours=h)

    def stat(media_id: str, h: int, viewers: int) -> dict:
        return {
            "media_id": media_id,
            "hour": hour(h),
            "views": viewers,
            "unique_viewers": viewers,
            "watch_time_s": 1.0,
            "avg_watch_time_s": 1.0,
            "completion_rate": 0.5,
        }

    events = pl.DataFrame(
        [
            ("e1", "u1", "m1", "s1", "play", hour(3.5)),  # first start in hour 3: sees hour 1 (8)
            ("e2", "u1", "m1", "s1", "complete", hour(3.6)),
            ("e3", "u1", "m1", "s2", "play", hour(5)),  # a later session: still hour 1's exposure
            ("e4", "u2", "m1", "s3", "play", hour(4.2)),  # sees hour 3 (3), its own hour's 99 never
            ("e5", "u2", "m2", "s4", "play", hour(1)),  # m2 had no viewers before: exposure 0
        ],
        schema=["event_id", "user_id", "media_id", "session_id", "event_type", "ts"],
        orient="row",
    )
    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as mp:
        mp.delenv("STREAMLAKE_LAKE_ROOT", raising=False)
        settings = get_settings(data_dir=scratch)
        upsert(settings, "hourly_stats", [stat("m1", 1, 8), stat("m1", 3, 3), stat("m1", 4, 99)])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "fetch_arrow_table", DeprecationWarning)
            store.feature_store(settings).apply(list(store.feast_objects(settings).values()))
            frame = catalog.platform_training_set(settings, events, alpha=0.5)
    assert frame.select("user_id", "media_id", "raw_weight", "exposure").rows() == [
        ("u1", "m1", 3.0, 8.0),  # two sessions + one completion
        ("u2", "m1", 1.0, 3.0),
        ("u2", "m2", 1.0, 0.0),
    ]
    assert frame["weight"].to_list() == pytest.approx([3 / 3.0, 1 / 2.0, 1.0])
    assert frame["first_ts"].to_list() == [hour(3.5), hour(4.2), hour(1)]
    with pytest.raises(ValueError, match="alpha"):
        catalog.platform_training_set(settings, events, alpha=-1)
