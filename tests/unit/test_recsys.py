"""Recommenders, metrics and the MLflow flow on small synthetic data with a known answer."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import sparse

from models.recsys.data import dataset_hash, interactions_from_events, split_per_user
from models.recsys.evaluation import Split, random_per_user
from models.recsys.itemknn import ItemKNN, shrunk_cosine
from models.recsys.metrics import coverage, map_at_k, ndcg_at_k, precision_at_k, recall_at_k
from models.recsys.popularity import TopPop
from models.settings import REPO_ROOT, Settings, get_settings


def two_communities() -> pl.DataFrame:
    """4 users watch all of A1..A4, 8 users all of B1..B4, one user watched A1 only.

    TopPop pushes the (more popular) B items to A users; ItemKNN sees the communities.
    """
    rows = [(f"a{u}", f"A{i}") for u in range(4) for i in range(1, 5)]
    rows += [(f"b{u}", f"B{i}") for u in range(8) for i in range(1, 5)]
    rows += [("solo", "A1")]
    frame = pl.DataFrame(rows, schema=["user_id", "media_id"], orient="row")
    return frame.with_columns(weight=pl.lit(1.0), last_ts=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)))


# --- data -------------------------------------------------------------------------------------


def test_interactions_weight_sessions_plus_completions() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    events = [
        # u1/m1: two sessions, one completed -> 2 + 1
        ("e1", "u1", "m1", "s1", "play", t0),
        ("e2", "u1", "m1", "s1", "heartbeat", t0 + timedelta(seconds=10)),
        ("e3", "u1", "m1", "s1", "complete", t0 + timedelta(seconds=20)),
        ("e4", "u1", "m1", "s2", "play", t0 + timedelta(days=1)),
        # u1/m2: one session of heartbeats only (its play was lost) -> 1
        ("e5", "u1", "m2", "s3", "heartbeat", t0 + timedelta(days=2)),
        ("e6", "u1", "m2", "s3", "heartbeat", t0 + timedelta(days=2, seconds=10)),
    ]
    frame = pl.DataFrame(
        events, schema=["event_id", "user_id", "media_id", "session_id", "event_type", "ts"], orient="row"
    ).with_columns(position_s=pl.lit(0.0), device=pl.lit("web"), tier=pl.lit("free"))
    out = interactions_from_events(frame)
    assert out.columns == ["user_id", "media_id", "weight", "last_ts"]
    assert out.select("media_id", "weight").rows() == [("m1", 3.0), ("m2", 1.0)]
    assert out["last_ts"].to_list() == [t0 + timedelta(days=1), t0 + timedelta(days=2, seconds=10)]


def test_split_is_per_user_deterministic_and_keeps_singletons_in_train() -> None:
    data = two_communities()
    train, test = split_per_user(data, test_fraction=0.25, seed=7)
    again_train, again_test = split_per_user(data.reverse(), test_fraction=0.25, seed=7)
    assert train.equals(again_train) and test.equals(again_test)
    assert pl.concat([train, test]).sort("user_id", "media_id").equals(data.sort("user_id", "media_id"))
    assert test.join(train, on=["user_id", "media_id"], how="semi").is_empty()
    assert "solo" not in test["user_id"].to_list()
    per_user = test.group_by("user_id").len()
    assert per_user.height == 12 and (per_user["len"] == 1).all()  # round(4 * 0.25) each
    other = [split_per_user(data, seed=s)[1] for s in range(5)]
    assert any(not t.sort("user_id").equals(test.sort("user_id")) for t in other)


def test_dataset_hash_ignores_row_and_column_order() -> None:
    data = two_communities()
    assert dataset_hash(data) == dataset_hash(data.reverse().select(reversed(data.columns)))
    assert dataset_hash(data) != dataset_hash(data.head(-1))


# --- metrics: hand-computed -------------------------------------------------------------------

TRUTH = pl.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "media_id": ["a", "b", "c", "d"]})
RECS = pl.DataFrame(
    {
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u4"],  # u3: no recs (scores 0); u4: no truth (left out)
        "rank": [1, 2, 3, 1, 2, 1],
        "media_id": ["a", "x", "b", "x", "c", "a"],
    }
)


def test_metrics_match_hand_computed_values() -> None:
    # u1: hits at ranks 1 and 3 of |truth| 2; u2: hit at rank 2 of 1; u3: nothing.
    ndcg_u1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_u2 = 1 / math.log2(3)
    assert ndcg_at_k(TRUTH, RECS, k=3) == pytest.approx((ndcg_u1 + ndcg_u2) / 3)
    assert precision_at_k(TRUTH, RECS, k=3) == pytest.approx((2 / 3 + 1 / 3) / 3)
    assert recall_at_k(TRUTH, RECS, k=3) == pytest.approx(2 / 3)
    assert map_at_k(TRUTH, RECS, k=3) == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 3)
    # k=1: ideal DCG is over min(|truth|, 1) = 1 item, so u1's hit at rank 1 is perfect.
    assert ndcg_at_k(TRUTH, RECS, k=1) == pytest.approx(1 / 3)
    assert coverage(RECS, n_items=10) == pytest.approx(0.4)
    assert ndcg_at_k(TRUTH.head(0), RECS) == 0.0


# --- models -----------------------------------------------------------------------------------


def test_shrunk_cosine_by_hand() -> None:
    # items 0,1 co-watched by one user; item 2 alone. |x0| = |x1| = 1.
    seen = sparse.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    sim = shrunk_cosine(seen, neighbours=5, shrink=1.0).toarray()
    assert sim == pytest.approx(np.array([[0, 0.5, 0], [0.5, 0, 0], [0, 0, 0]]))
    assert shrunk_cosine(seen, neighbours=1, shrink=0.0).count_nonzero() == 2


def test_itemknn_beats_toppop_where_communities_exist() -> None:
    train, test = split_per_user(two_communities(), seed=7)
    users = test["user_id"].unique().to_list()
    knn = ItemKNN(neighbours=5, shrink=1.0).fit(train).recommend(users, k=5)
    pop = TopPop().fit(train).recommend(users, k=5)
    assert ndcg_at_k(test, knn, k=5) == pytest.approx(1.0)
    # A users find their held-out A item behind four B items: 1/log2(6); B users get rank 1.
    assert ndcg_at_k(test, pop, k=5) == pytest.approx((4 / math.log2(6) + 8) / 12)


def test_recommend_shape_exclusion_and_cold_start() -> None:
    train = two_communities()
    model = ItemKNN(neighbours=5, shrink=1.0).fit(train)
    recs = model.recommend(["a0", "stranger", "a0"], k=10)
    assert recs.schema == pl.Schema(
        {"user_id": pl.String, "rank": pl.Int32, "media_id": pl.String, "score": pl.Float64}
    )
    a0 = recs.filter(pl.col("user_id") == "a0")
    assert a0["rank"].to_list() == [1, 2, 3, 4]  # 8 items, 4 seen: fewer than k rows
    assert set(a0["media_id"]) == {"B1", "B2", "B3", "B4"}
    cold = recs.filter(pl.col("user_id") == "stranger")
    assert (
        cold["media_id"].to_list()
        == TopPop().fit(train).recommend(["a0"], 8, exclude_seen=False)["media_id"].to_list()
    )
    assert recs["user_id"].unique(maintain_order=True).to_list() == ["a0", "stranger"]
    assert "A1" in model.recommend(["solo"], k=8, exclude_seen=False)["media_id"].to_list()
    assert "A1" not in model.recommend(["solo"], k=8)["media_id"].to_list()
    assert model.recommend([], k=3).is_empty()


# --- MLflow flow ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One store for the flow: creating the sqlite schema costs ~2 s, so pay it once."""
    return get_settings(data_dir=tmp_path_factory.mktemp("data"))


def test_mlflow_train_promote_load(mlflow_settings: Settings) -> None:
    from models.recsys import registry

    settings = mlflow_settings
    with pytest.raises(LookupError):
        registry.load_champion(settings)
    train, test = split_per_user(two_communities(), seed=settings.seed)

    pop = registry.train_and_log(TopPop(), train, test, settings, k=5)
    knn = registry.train_and_log(ItemKNN(neighbours=5, shrink=1.0), train, test, settings, k=5)
    assert (pop.model_version, knn.model_version) == ("1", "2")
    assert knn.metrics["ndcg_at_5"] > pop.metrics["ndcg_at_5"]
    with pytest.raises(LookupError):  # the model exists now, its alias does not
        registry.load_champion(settings)

    assert registry.promote_if_better(settings, pop.model_version, metric="ndcg_at_5")  # no champion yet
    assert registry.promote_if_better(settings, knn.model_version, metric="ndcg_at_5")
    assert not registry.promote_if_better(settings, pop.model_version, metric="ndcg_at_5")  # worse
    assert not registry.promote_if_better(settings, knn.model_version, metric="ndcg_at_5")  # same

    champion = registry.load_champion(settings)
    assert champion.version == knn.model_version
    recs = champion.recommend(["a0", "stranger"], k=2)
    assert recs.columns == ["user_id", "rank", "media_id", "score"]
    assert recs.filter(pl.col("user_id") == "a0")["media_id"].to_list()[0].startswith("A")
    assert recs.filter(pl.col("user_id") == "stranger")["rank"].to_list() == [1, 2]
    through_mlflow = champion.model.predict(pd.DataFrame({"user_id": ["a0", "stranger"], "k": [2, 2]}))
    assert_frame_equal(recs, pl.from_pandas(through_mlflow).with_columns(pl.col("rank").cast(pl.Int32)))

    again = registry.train_and_log(ItemKNN(neighbours=5, shrink=1.0), train, test, settings, k=5)
    assert again.reused and again.model_version == knn.model_version and again.run_id == knn.run_id

    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_uri, settings.mlflow_uri)
    run = client.get_run(knn.run_id)
    assert run.data.params["protocol"].startswith(f"per-user random 75/25, seed {settings.seed}")
    assert run.data.params["seed"] == str(settings.seed)
    assert len(run.data.params["dataset_hash"]) == 64
    artifacts = client.get_experiment(run.info.experiment_id).artifact_location
    assert artifacts.startswith(settings.mlflow_artifacts.resolve().as_uri())
    assert "MLFLOW_TRACKING_URI" not in os.environ, "the registry must not leak its store into the env"


def test_registry_uses_the_evaluation_module() -> None:
    from models.recsys import evaluation, registry

    assert not hasattr(registry, "evaluate") and not hasattr(registry, "protocol")
    assert registry.random_per_user is evaluation.random_per_user


# --- tuning, per-dataset experiments and the champion gate ------------------------------------


def _toy_split(seed: int = 42) -> Split:
    """two_communities with more users, split per user (k=5)."""
    rows = [(f"a{u}", f"A{i}") for u in range(6) for i in range(1, 6)]
    rows += [(f"b{u}", f"B{i}") for u in range(10) for i in range(1, 6)]
    frame = pl.DataFrame(rows, schema=["user_id", "media_id"], orient="row").with_columns(
        weight=pl.lit(1.0), last_ts=pl.lit(datetime(2025, 1, 1, tzinfo=UTC))
    )
    return random_per_user(0.2, seed, 5).split(frame)


def test_tuning_logs_child_runs_under_the_model_run(mlflow_settings: Settings) -> None:
    from mlflow import MlflowClient

    from models.recsys import registry
    from models.recsys.catalog import Entry
    from models.recsys.tuning import Tuner

    settings, split = mlflow_settings, _toy_split()
    entry = Entry(
        "itemknn", "models.recsys.itemknn:ItemKNN", {"neighbours": 5, "shrink": 1.0}, {"shrink": (1.0, 50.0)}
    )
    tuner = Tuner(entry, split.protocol, metric="ndcg_at_5")
    run = registry.tune_and_log(tuner, split, settings, dataset="toy")
    assert run.model_version == "1" and not run.reused and run.metrics["ndcg_at_5"] == pytest.approx(1.0)

    client = MlflowClient(settings.mlflow_uri, settings.mlflow_uri)
    parent = client.get_run(run.run_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == "streamlake-recs/toy"
    assert parent.data.tags[registry.ROLE_TAG] == "model"
    params = parent.data.params
    assert params["protocol"] == split.protocol.describe() and params["seed"] == "42"
    assert params["dataset_hash"] == split.dataset_hash and params["code_version"]
    assert params["model.shrink"] in ("1.0", "50.0") and "tuning.space" in params
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.run_id}'"
    )
    assert len(children) == 2
    assert {c.data.tags[registry.ROLE_TAG] for c in children} == {"trial"}
    assert all("val_ndcg_at_5" in c.data.metrics and "ndcg_at_5" not in c.data.metrics for c in children)
    assert client.get_registered_model("streamlake-recommender-toy").name == registry.registered_model_name(
        settings, "toy"
    )
    again = registry.tune_and_log(tuner, split, settings, dataset="toy")
    assert again.reused and again.run_id == run.run_id
    assert len(client.search_runs([experiment.experiment_id])) == 3  # nothing new was logged


def test_champion_moves_only_on_a_better_model_measured_on_the_same_rows(mlflow_settings: Settings) -> None:
    from models.recsys import registry

    settings, split = mlflow_settings, _toy_split()
    dataset = "gate"
    good = registry.train_and_log(
        ItemKNN(neighbours=5, shrink=1.0),
        split.train,
        split.test,
        settings,
        protocol=split.protocol,
        dataset=dataset,
    )
    worse = registry.train_and_log(
        TopPop(), split.train, split.test, settings, protocol=split.protocol, dataset=dataset
    )
    assert worse.metrics["ndcg_at_5"] < good.metrics["ndcg_at_5"]
    assert registry.promote_if_better(settings, good.model_version, "ndcg_at_5", dataset)
    assert not registry.promote_if_better(settings, worse.model_version, "ndcg_at_5", dataset)  # worse: stays
    best = registry.promote_best(settings, [worse.model_version, good.model_version], "ndcg_at_5", dataset)
    assert (best.best, best.promoted, best.champion) == (good.model_version, False, good.model_version)
    assert registry.champion_version(settings, dataset) == good.model_version
    assert (
        registry.champion_version(settings) != good.model_version
    )  # the platform's alias is another model's

    # A candidate scored on other rows cannot be compared: promote_if_better leaves the alias,
    # promote_best (the best of a fresh round) replaces the stale champion.
    other = _toy_split(seed=7)
    fresh = registry.train_and_log(
        TopPop(), other.train, other.test, settings, protocol=other.protocol, dataset=dataset
    )
    assert not registry.promote_if_better(settings, fresh.model_version, "ndcg_at_5", dataset)
    assert registry.promote_best(settings, [fresh.model_version], "ndcg_at_5", dataset).promoted
    assert registry.champion_version(settings, dataset) == fresh.model_version
    with pytest.raises(ValueError, match="different held-out rows"):
        registry.promote_best(settings, [fresh.model_version, good.model_version], "ndcg_at_5", dataset)


def test_results_table_is_generated_from_mlflow_runs(mlflow_settings: Settings) -> None:
    import importlib.util

    from models.recsys import registry

    settings, split = mlflow_settings, _toy_split()
    registry.train_and_log(
        TopPop(), split.train, split.test, settings, protocol=split.protocol, dataset="table"
    )
    registry.train_and_log(
        ItemKNN(neighbours=5, shrink=1.0),
        split.train,
        split.test,
        settings,
        protocol=split.protocol,
        dataset="table",
    )
    runs = registry.results(settings, "table")
    assert sorted(runs["model"]) == ["itemknn", "toppop"]
    path = REPO_ROOT / "scripts" / "recsys_table.py"
    spec = importlib.util.spec_from_file_location("recsys_table", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table = script.render(runs, "table", k=5)
    lines = table.splitlines()
    assert (
        lines[0].startswith("From MLflow experiment `streamlake-recs/table`")
        and split.dataset_hash[:12] in lines[0]
    )
    assert f"**{split.protocol.name}**: {split.protocol.describe()}" in lines
    body = [line for line in lines if line.startswith("| `")]
    assert body[0].startswith("| `itemknn` | 1.0000 |")  # best NDCG@5 first
    assert body[1].startswith("| `toppop` |")
    readme = f"intro\n{script.BEGIN}\nstale\n{script.END}\nrest\n"
    assert (
        script.readme_table.replace_between_markers(readme, table, script.BEGIN, script.END)
        == f"intro\n{script.BEGIN}\n{table}\n{script.END}\nrest\n"
    )
    assert script.BEGIN in (REPO_ROOT / "README.md").read_text()
    assert registry.results(settings, "nothing-here").is_empty()


def test_definitions_train_every_catalog_model_and_keep_ml100k_out_of_the_demo() -> None:
    from models.recsys import catalog
    from pipelines.definitions import defs

    def keys(job: str) -> set[str]:
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys}

    models = {f"{entry.name}_model" for entry in catalog.available()}
    assert {"toppop_model", "itemknn_model"} <= models
    assert models | {"platform_training_set", "champion_model", "recs_topk"} <= keys("training_job")
    evaluation = {
        "ml100k_ranking_eval",
        "ml100k_sequential_eval",
        "ml100k_cold_start_eval",
        "ml100k_champion",
    }
    assert evaluation | {"movielens_100k"} == keys("ml100k_evaluation_job")
    assert not evaluation & keys("analytics_job")  # `make demo` runs analytics_job


def test_seen_cells_are_scipys_nonzero_cells_read_off_the_csr_arrays() -> None:
    """The seen-item mask reads the CSR arrays directly; it must match scipy's nonzero(), which also
    leaves out explicitly stored zeros."""
    seen = sparse.csr_matrix(np.array([[0, 2, 0, 1], [0, 0, 0, 0], [3, 0, 4, 0], [5, 6, 0, 7]], dtype=float))
    seen.data[seen.data == 4] = 0.0  # stored, but not an interaction
    model = TopPop()
    model._seen = seen
    for users in (np.array([2, 0, 1, 3]), np.array([1]), np.array([3, 3]), np.array([], dtype=np.int64)):
        cells = sorted(zip(*model._seen_cells(users), strict=True))
        assert cells == sorted(zip(*seen[users].nonzero(), strict=True))
