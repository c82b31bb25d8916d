"""The model library on small synthetic data with planted structure: communities that popularity
cannot see, a known EASE answer, cold items and users, exploration and ONNX parity."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from models.recsys.base import Recommender
from models.recsys.bpr import BPR
from models.recsys.content import ContentBased
from models.recsys.data import split_per_user
from models.recsys.ease import EASE, ease_weights
from models.recsys.exploration import evidence_from_hourly_stats, explore, explore_ranking
from models.recsys.hybrid import Hybrid
from models.recsys.ials import IALS
from models.recsys.itemknn import ItemKNN
from models.recsys.metrics import ndcg_at_k
from models.recsys.popularity import TopPop
from models.recsys.sasrec import SASRec, last_items, training_windows

COMMUNITY_USERS = (8, 16, 24)  # the big community's items top the popularity list
ITEMS_PER_COMMUNITY = 8
WATCHED = 6
T0 = datetime(2025, 1, 1, tzinfo=UTC)
Split = tuple[pl.DataFrame, pl.DataFrame]


def communities(seed: int = 0) -> pl.DataFrame:
    """Users of community c watch 6 of its 8 items (m{c}_0..m{c}_7) in random order, one a day."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, n_users in enumerate(COMMUNITY_USERS):
        for u in range(n_users):
            items = rng.choice(ITEMS_PER_COMMUNITY, WATCHED, replace=False)
            rows += [(f"u{c}_{u}", f"m{c}_{i}", 1.0, T0 + timedelta(days=day)) for day, i in enumerate(items)]
    return pl.DataFrame(rows, schema=["user_id", "media_id", "weight", "last_ts"], orient="row")


def embeddings(extra: dict[str, int] | None = None) -> pl.DataFrame:
    """One-hot community direction plus small noise; `extra` adds (cold) items of a community."""
    rng = np.random.default_rng(1)
    items = {f"m{c}_{i}": c for c in range(3) for i in range(ITEMS_PER_COMMUNITY)} | (extra or {})
    vectors = np.eye(4)[list(items.values())] + 0.05 * rng.standard_normal((len(items), 4))
    return pl.DataFrame({"media_id": list(items), "embedding": vectors.tolist()})


FAST_MODELS: dict[str, Callable[[], Recommender]] = {
    "ease": lambda: EASE(l2=10.0),
    "ials": lambda: IALS(factors=8, regularization=1.0, alpha=10.0, iterations=10),
    "bpr": lambda: BPR(factors=16, lr=0.05, epochs=20, batch_size=32),
    "sasrec": lambda: SASRec(hidden=16, layers=1, max_len=8, dropout=0.1, epochs=40, lr=3e-2, batch_size=16),
    "content": lambda: ContentBased(embeddings()),
    "hybrid": lambda: Hybrid(EASE(l2=10.0), ContentBased(embeddings()), weight=0.3),
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny batches gain nothing from intra-op threads, and on a shared CPU they stall each other."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def split() -> Split:
    return split_per_user(communities(), seed=7)


@pytest.fixture(scope="module")
def fitted(split: Split) -> dict[str, Recommender]:
    """Every model fitted once on the module's split (about two seconds in all)."""
    return {name: make().fit(split[0]) for name, make in FAST_MODELS.items()}


# --- every model ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAST_MODELS))
def test_model_beats_toppop_where_communities_exist(
    name: str, fitted: dict[str, Recommender], split: Split
) -> None:
    train, test = split
    users = test["user_id"].unique().to_list()
    pop = ndcg_at_k(test, TopPop().fit(train).recommend(users, k=5), k=5)
    ours = ndcg_at_k(test, fitted[name].recommend(users, k=5), k=5)
    assert ours > pop + 0.2, (ours, pop)


@pytest.mark.parametrize("name", list(FAST_MODELS))
def test_model_never_recommends_seen_items_and_names_itself(
    name: str, fitted: dict[str, Recommender], split: Split
) -> None:
    train = split[0]
    model = fitted[name]
    recs = model.recommend(train["user_id"].unique().to_list(), k=20)
    assert recs.join(train, on=["user_id", "media_id"], how="semi").is_empty()
    assert recs.group_by("user_id").len()["len"].min() > 0
    assert model.name == name and isinstance(model.params(), dict)


def test_params_are_the_constructor_arguments_under_their_own_names() -> None:
    """What MLflow logs and the fingerprint hashes: every hyper-parameter, nothing else."""
    assert IALS(factors=8, alpha=2.0).params() == {
        "factors": 8,
        "regularization": 40.0,
        "alpha": 2.0,
        "iterations": 15,
        "cg_steps": 3,
        "seed": 42,
    }
    assert BPR(epochs=3).params()["epochs"] == 3 and len(BPR().params()) == 6
    assert list(SASRec(hidden=16).params()) == [
        "hidden",
        "layers",
        "heads",
        "max_len",
        "dropout",
        "epochs",
        "lr",
        "batch_size",
        "seed",
    ]
    assert ItemKNN(neighbours=5, shrink=1.0).params() == {"neighbours": 5, "shrink": 1.0}
    assert EASE(l2=10.0).params() == {"l2": 10.0, "binary": True}
    assert TopPop().params() == {}


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: IALS(factors=8, iterations=3, seed=seed),
        lambda seed: BPR(factors=8, epochs=3, batch_size=64, seed=seed),
        lambda seed: SASRec(hidden=16, layers=1, max_len=8, epochs=3, seed=seed),
    ],
    ids=["ials", "bpr", "sasrec"],
)
def test_training_is_deterministic_for_a_seed(make: Callable[[int], Recommender]) -> None:
    train = communities()
    users = np.arange(10)
    first, again, other = make(1).fit(train), make(1).fit(train), make(2).fit(train)
    assert np.array_equal(first._score_users(users), again._score_users(users))
    assert not np.allclose(first._score_users(users), other._score_users(users))
    revived = pickle.loads(pickle.dumps(first))
    assert np.array_equal(revived._score_users(users), first._score_users(users))


# --- EASE -------------------------------------------------------------------------------------


def test_ease_closed_form_by_hand() -> None:
    # Two items: B_01 regresses item 1 on item 0 = G_01 / (G_00 + λ), and B_10 = G_10 / (G_11 + λ).
    seen = sparse.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]]))  # G = [[2, 1], [1, 1]]
    assert ease_weights(seen, l2=1.0) == pytest.approx(np.array([[0.0, 1 / 3], [1 / 2, 0.0]]))
    # Three items with the closed form B = I - P diag(1/diag P), P = (G + λI)^-1, diag(B) = 0.
    seen = sparse.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]))
    precision = np.linalg.inv(np.array([[4.0, 2.0, 1.0], [2.0, 5.0, 2.0], [1.0, 2.0, 4.0]]))
    expected = np.eye(3) - precision / np.diag(precision)
    assert ease_weights(seen, l2=2.0) == pytest.approx(expected)


def test_ease_binary_ignores_weights_and_weighted_does_not() -> None:
    plain = communities()
    weighted = plain.with_columns(weight=pl.col("weight") * (1 + pl.int_range(pl.len()) % 3))
    users = plain["user_id"].unique().sort().to_list()[:12]

    def scores(model: EASE, train: pl.DataFrame) -> np.ndarray:
        recs = model.fit(train).recommend(users, k=100, exclude_seen=False)
        return recs.sort("user_id", "media_id")["score"].to_numpy()

    binary = scores(EASE(l2=10.0), weighted)
    assert binary == pytest.approx(scores(EASE(l2=10.0), plain))
    assert binary != pytest.approx(scores(EASE(l2=10.0, binary=False), weighted))


# --- SASRec sequences -------------------------------------------------------------------------


def test_sasrec_sequences_are_right_aligned_in_time_order() -> None:
    order = sparse.csr_matrix(np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0]]))
    assert last_items(order, 3).tolist() == [[2, 3, 1], [0, 0, 4], [2, 3, 4]]
    inputs, targets = training_windows(order, 2)
    # user 0: 2->3->1; user 1: no pair; user 2: 1->2->3->4 cut into two windows from the end
    assert inputs.tolist() == [[2, 3], [2, 3], [0, 1]]
    assert targets.tolist() == [[3, 1], [3, 4], [0, 2]]


# --- content and hybrid: cold start -----------------------------------------------------------


def test_content_recommends_cold_items_and_serves_cold_users(
    split: Split,
) -> None:
    train = split[0]
    model = ContentBased(embeddings({"new0": 0, "new2": 2})).fit(train)
    assert {"new0", "new2"} <= set(model._items)
    recs = model.recommend(["u0_0"], k=3)
    assert "new0" in recs["media_id"].to_list() and "new2" not in recs["media_id"].to_list()
    visitor = model.recommend_for_items(["m2_0", "m2_1"], k=7)
    assert visitor["rank"].to_list() == list(range(1, 8))
    assert set(visitor["media_id"]) == {f"m2_{i}" for i in range(2, 8)} | {"new2"}
    fallback = model.recommend_for_items(["unknown"], k=3)
    assert fallback["media_id"].to_list() == TopPop().fit(train).recommend(["x"], 3)["media_id"].to_list()
    # an unknown user without seeds gets the popularity list from recommend, as for every model
    assert model.recommend(["stranger"], k=3)["media_id"].to_list() == fallback["media_id"].to_list()


def test_content_reads_list_and_array_embeddings() -> None:
    frame = embeddings()
    as_array = frame.with_columns(pl.col("embedding").cast(pl.Array(pl.Float64, 4)))
    a, b = ContentBased(frame), ContentBased(as_array)
    assert np.allclose(a._embeddings, b._embeddings)
    assert np.allclose(np.linalg.norm(a._embeddings, axis=1), 1.0)
    with pytest.raises(ValueError, match="repeats"):
        ContentBased(pl.concat([frame, frame.head(1)]))


def test_hybrid_puts_a_cold_item_in_the_list(split: Split) -> None:
    train = split[0]
    model = Hybrid(EASE(l2=10.0), ContentBased(embeddings({"new0": 0})), weight=0.3).fit(train)
    recs = model.recommend(["u0_0", "u1_0"], k=5)
    assert "new0" in recs.filter(pl.col("user_id") == "u0_0")["media_id"].to_list()
    assert "new0" not in recs.filter(pl.col("user_id") == "u1_0")["media_id"].to_list()
    assert recs.join(train, on=["user_id", "media_id"], how="semi").is_empty()
    assert model.params()["collaborative"] == "ease" and model.params()["collaborative.l2"] == 10.0


# --- exploration ------------------------------------------------------------------------------


def top_lists(n_users: int, k: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": np.repeat([f"u{u}" for u in range(n_users)], k),
            "rank": np.tile(np.arange(1, k + 1), n_users).astype(np.int32),
            "media_id": np.tile([f"m{i}" for i in range(k)], n_users),
            "score": np.tile(np.linspace(1.0, 0.1, k), n_users),
        }
    )


def test_exploration_is_seeded_and_explores_at_about_epsilon() -> None:
    recs = top_lists(n_users=1000, k=10)
    pool = pl.DataFrame({"media_id": [f"m{i}" for i in range(300)], "trials": 100, "successes": 10})
    out = explore(recs, pool, epsilon=0.2, seed=3)
    assert out.columns == [*recs.columns, "explored"]
    assert out.equals(explore(recs, pool, epsilon=0.2, seed=3))
    assert not out.equals(explore(recs, pool, epsilon=0.2, seed=4))
    assert out["explored"].mean() == pytest.approx(0.2, abs=0.01)
    assert out.drop("media_id", "explored").equals(recs.drop("media_id"))
    kept = out.filter(~pl.col("explored"))
    assert kept.join(recs, on=["user_id", "rank", "media_id"], how="anti").is_empty()
    assert out.group_by("user_id").agg(pl.col("media_id").n_unique())["media_id"].min() == 10
    none = explore(recs, pool, epsilon=0.0, seed=3)
    assert none.drop("explored").equals(recs) and not none["explored"].any()


def test_thompson_sampling_prefers_uncertain_and_good_items_over_proven_poor_ones() -> None:
    recs = top_lists(n_users=500, k=2)
    pool = pl.DataFrame(
        {"media_id": ["good", "new", "poor"], "trials": [1000, 0, 1000], "successes": [500, 0, 10]}
    )
    picked = explore(recs, pool, epsilon=0.5, seed=0).filter(pl.col("explored"))["media_id"]
    counts = picked.value_counts().to_dict(as_series=False)
    share = dict(zip(counts["media_id"], counts["count"], strict=True))
    assert share.get("poor", 0) < 0.02 * picked.len()
    assert share["good"] > 0.2 * picked.len() and share["new"] > 0.2 * picked.len()


def test_exploration_leaves_a_slot_when_the_pool_is_exhausted() -> None:
    recs = top_lists(n_users=50, k=3)
    pool = pl.DataFrame({"media_id": ["m0", "m1", "m2", "x"], "trials": 1, "successes": 1})
    out = explore(recs, pool, epsilon=1.0, seed=0)
    assert (out.group_by("user_id").agg(pl.col("explored").sum())["explored"] <= 1).all()
    assert set(out.filter(pl.col("explored"))["media_id"]) == {"x"}


# --- ONNX -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # torch.export internals
@pytest.mark.parametrize("name", ["ease", "bpr", "sasrec"])
def test_onnx_scores_match_native_scores(name: str, fitted: dict[str, Recommender], tmp_path: Path) -> None:
    from models.recsys.onnx_export import export_onnx, onnx_scores, parity

    model = fitted[name]
    exported = export_onnx(model, tmp_path / f"{name}.onnx")  # type: ignore[arg-type]
    assert (tmp_path / f"{name}.onnx").read_bytes() == exported
    assert parity(model, exported) < 1e-4  # type: ignore[arg-type]
    one = onnx_scores(exported, model.onnx_inputs(np.array([3])))  # type: ignore[attr-defined]
    assert one.shape == (1, len(model._items))


def test_evidence_counts_sessions_and_completions_per_title() -> None:
    hourly = pl.DataFrame(
        {"media_id": ["a", "a", "b"], "views": [4, 6, 3], "completion_rate": [0.5, 1 / 3, None]}
    )
    evidence = evidence_from_hourly_stats(hourly)
    assert evidence.rows() == [("a", 10, 4), ("b", 3, 0)]


def test_explored_ranking_picks_only_from_the_users_candidates() -> None:
    ranked = top_lists(n_users=1, k=8)
    evidence = pl.DataFrame({"media_id": ["m7", "elsewhere"], "trials": [5, 0], "successes": [5, 0]})
    out = explore_ranking(ranked, evidence, k=3, epsilon=1.0, seed=0)
    assert out["rank"].to_list() == [1, 2, 3] and out["explored"].all()
    assert set(out["media_id"]) <= {f"m{i}" for i in range(3, 8)}
    assert out["media_id"].n_unique() == 3
