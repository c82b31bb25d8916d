"""Every recommender the platform trains, by name: how to build it and a small space to tune it over.

Model modules are imported only when an entry is built (`Entry.load`), so the catalog and its
users (tuning, the training assets, the benchmark) import fast and keep working when a model's
module is missing: `available()` lists what can be built here.

An entry's defaults are its first search candidate, so tuning never does worse on validation than
the defaults. A model whose constructor takes `seed` gets the run's seed. Content models (and the
hybrid built on one) need item embeddings, passed in a `BuildContext`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from models.recsys.base import Recommender
from models.settings import Settings


@dataclass(frozen=True)
class BuildContext:
    """What a constructor may need beyond its hyper-parameters.

    item_embeddings: media_id + embedding (list of floats) for content models; params_of: tuned
    parameters of other entries (the hybrid builds its collaborative half with them).
    """

    seed: int = 42
    item_embeddings: pl.DataFrame | None = None
    params_of: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One model family: `module:Class`, its defaults and a small grid around them."""

    name: str
    target: str
    defaults: Mapping[str, object] = field(default_factory=dict)
    space: Mapping[str, Sequence[object]] = field(default_factory=dict)
    sequential: bool = False
    content: bool = False
    description: str = ""
    # Overrides for the platform's daily run (and so the demo): what keeps it quick on 2 cores.
    quick: Mapping[str, object] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def quickened(self) -> Entry:
        """This entry with the quick overrides as its defaults."""
        return replace(self, defaults={**self.defaults, **self.quick}) if self.quick else self

    def available(self) -> bool:
        """True when the model's module is importable here (without importing it)."""
        return importlib.util.find_spec(self.module) is not None

    def load(self) -> type[Recommender]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)

    def candidates(self, max_trials: int, seed: int) -> list[dict[str, object]]:
        """The defaults first, then grid points (a seeded sample of them when the grid is larger)."""
        if max_trials < 1:
            raise ValueError(f"max_trials must be at least 1, got {max_trials}")
        first = dict(self.defaults)
        names = list(self.space)
        grid = [
            point
            for values in itertools.product(*(self.space[n] for n in names))
            if (point := {**first, **dict(zip(names, values, strict=True))}) != first
        ]
        if len(grid) > max_trials - 1:
            keep = np.random.default_rng(seed).choice(len(grid), size=max_trials - 1, replace=False)
            grid = [grid[i] for i in sorted(keep)]
        return [first, *grid]

    def parse(self, logged: Mapping[str, str]) -> dict[str, object]:
        """Tunable params back from MLflow's strings (`model.<name>` keys), typed like the space."""
        parsed: dict[str, object] = {}
        for key in {*self.defaults, *self.space}:
            raw = logged.get(f"model.{key}")
            if raw is None:
                continue
            examples = [*self.space.get(key, ()), self.defaults.get(key)]
            kind = next((type(v) for v in examples if v is not None), str)
            parsed[key] = (raw == "True") if kind is bool else kind(raw)
        return parsed

    def build(
        self, params: Mapping[str, object] | None = None, context: BuildContext | None = None
    ) -> Recommender:
        """An unfitted model with the defaults overridden by params."""
        context = context or BuildContext()
        cls = self.load()
        kwargs: dict[str, Any] = {**self.defaults, **(params or {})}
        accepted = inspect.signature(cls).parameters
        if "seed" in accepted and "seed" not in kwargs:
            kwargs["seed"] = context.seed
        if self.content:
            if context.item_embeddings is None:
                raise ValueError(f"{self.name} needs item embeddings (BuildContext.item_embeddings)")
            return _build_content(self, cls, kwargs, context)
        return cls(**kwargs)


def _build_content(
    entry: Entry, cls: type[Recommender], kwargs: dict[str, Any], context: BuildContext
) -> Recommender:
    """ContentBased(item_embeddings, ...) or Hybrid(collaborative, content, weight)."""
    if entry.name == "content":
        return cls(context.item_embeddings, **kwargs)
    collaborative_name = str(kwargs.pop("collaborative"))
    collaborative = get(collaborative_name).build(context.params_of.get(collaborative_name), context)
    content = get("content").build(context.params_of.get("content"), context)
    return cls(collaborative, content, **kwargs)


ENTRIES: tuple[Entry, ...] = (
    Entry("toppop", "models.recsys.popularity:TopPop", description="most watched first (baseline)"),
    Entry(
        "itemknn",
        "models.recsys.itemknn:ItemKNN",
        {"neighbours": 50, "shrink": 10.0},
        {"neighbours": (50, 100, 200), "shrink": (0.0, 10.0)},
        description="item-item shrunk cosine (baseline)",
    ),
    Entry(
        "ease",
        "models.recsys.ease:EASE",
        {"l2": 500.0},
        {"l2": (100.0, 250.0, 500.0, 1000.0, 2000.0)},
        description="closed-form item-item linear model (Steck 2019)",
    ),
    Entry(
        "ials",
        "models.recsys.ials:IALS",
        {},
        {"factors": (64, 128), "regularization": (20.0, 40.0, 80.0)},
        description="implicit ALS with conjugate gradient (Hu et al. 2008)",
    ),
    Entry(
        "bpr",
        "models.recsys.bpr:BPR",
        {},
        {},
        description="matrix factorisation trained on pairwise ranking (Rendle et al. 2009)",
    ),
    Entry(
        "sasrec",
        "models.recsys.sasrec:SASRec",
        {},
        {},
        sequential=True,
        description="self-attentive sequential model (Kang & McAuley 2018)",
        quick={"epochs": 20},
    ),
    Entry(
        "content",
        "models.recsys.content:ContentBased",
        {},
        {},
        content=True,
        description="cosine between item embeddings and the user's profile",
    ),
    Entry(
        "hybrid",
        "models.recsys.hybrid:Hybrid",
        {"collaborative": "ease", "weight": 0.1},
        {"weight": (0.05, 0.1, 0.2, 0.4)},
        content=True,
        description="collaborative scores blended with content scores",
    ),
)

BY_NAME: dict[str, Entry] = {entry.name: entry for entry in ENTRIES}
BASELINES = ("toppop", "itemknn")


def get(name: str) -> Entry:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; the catalog has {sorted(BY_NAME)}") from None


def available(names: Sequence[str] | None = None) -> list[Entry]:
    """Entries whose modules exist here, in catalog order (optionally only these names)."""
    chosen = [get(n) for n in names] if names is not None else list(ENTRIES)
    return [entry for entry in chosen if entry.available()]


# --- the datasets the catalog is trained and evaluated on -------------------------------------

ML100K_GENRE_WEIGHT = 1.0
ML100K_DECADE_WEIGHT = 0.5
# A rating's weight is rating / this: 1 near the mean rating, 1.43 for five stars, 0.29 for one.
ML100K_RATING_SCALE = 3.5


def ml100k_interactions(ratings: pl.DataFrame) -> pl.DataFrame:
    """MovieLens-100K ratings as implicit feedback: every rating is one interaction, weighted by it.

    The Microsoft Recommenders ML-100K ranking benchmarks treat any rating as a positive and score
    binary relevance; the rating time becomes last_ts (what leave-last-out orders by). Relevance in
    the test part stays binary, but training may use how much a viewer liked what they rated: the
    weight (rating / 3.5) is iALS's confidence and ItemKNN's vector entry (EASE binarises). This
    was chosen on the validation split carved from train: iALS with its tuned defaults scored
    NDCG@10 0.2851 there with rating weights against 0.2828 with weight 1 for every rating.
    """
    return ratings.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String).alias("media_id"),
        (pl.col("rating").cast(pl.Float64) / ML100K_RATING_SCALE).alias("weight"),
        pl.col("ts").alias("last_ts"),
    ).sort("user_id", "media_id")


def ml100k_item_embeddings(items: pl.DataFrame) -> pl.DataFrame:
    """media_id + an L2-normalised embedding per movie: its genres (multi-hot) and release decade.

    The content the dataset carries, for the content and hybrid models (and cold-start items).
    """
    rows = items.with_row_index("row")
    genres = rows.select("row", "genres").explode("genres").drop_nulls("genres")
    genre_names = genres["genres"].unique().sort()
    decades = rows.select("row", (pl.col("release_year") // 10).alias("decade")).drop_nulls("decade")
    decade_names = decades["decade"].unique().sort()
    matrix = np.zeros((items.height, genre_names.len() + decade_names.len()), dtype=np.float32)
    genre_col = genres.join(genre_names.to_frame().with_row_index("col"), on="genres")
    matrix[genre_col["row"].to_numpy(), genre_col["col"].to_numpy()] = ML100K_GENRE_WEIGHT
    decade_col = decades.join(decade_names.to_frame().with_row_index("col"), on="decade")
    offset = genre_names.len()
    matrix[decade_col["row"].to_numpy(), offset + decade_col["col"].to_numpy()] = ML100K_DECADE_WEIGHT
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms > 0, norms, 1.0)
    return pl.DataFrame(
        {"media_id": items["item_id"].cast(pl.String), "embedding": matrix},
        schema={"media_id": pl.String, "embedding": pl.List(pl.Float32)},
    )


def embeddings_hash(item_embeddings: pl.DataFrame) -> str:
    """sha256 over media_id-sorted ids and embedding bytes: names the content a model was built on."""
    ordered = item_embeddings.sort("media_id")
    digest = hashlib.sha256("\n".join(ordered["media_id"].to_list()).encode())
    digest.update(np.asarray(ordered["embedding"].to_list(), dtype=np.float32).tobytes())
    return digest.hexdigest()


# Point-in-time exposure of an item when a viewer started it, and how strongly it discounts.
EXPOSURE_FEATURE = "media_stats:hourly_unique_viewers"
EXPOSURE_ALPHA = 0.5


def platform_training_set(
    settings: Settings, events: pl.DataFrame, alpha: float = EXPOSURE_ALPHA
) -> pl.DataFrame:
    """Interactions from view_events, weighted by a Feast point-in-time training set.

    Each (user, item) pair is one interaction (weight = sessions + completed sessions, see
    interactions_from_events). Feast's `training_set` then gives, for each pair, the item's
    `media_stats:hourly_unique_viewers` in the last complete hour before the viewer first
    started it: the entity timestamp is that start truncated to the hour minus 1 µs, because an
    hourly_stats row is stamped with its hour's start but counts the whole hour, so asking at the
    start time itself would read views made after it. Null (no views within the view's 2-day TTL)
    means no exposure.

    That exposure is a propensity: an item many people were watching right then was likely on
    the viewer's screen (trending rows, autoplay), so choosing it says less about taste than
    choosing an item nobody was watching. The weight models train on is discounted by it,
    weight = raw_weight / (1 + exposure) ** alpha (alpha 0 turns this off): an inverse-propensity
    correction that needs point-in-time values, as any later value would leak the item's future
    success into its past interactions. Columns: user_id, media_id, weight, last_ts (what the
    models read), then first_ts, raw_weight and exposure (for inspection).
    """
    from models.features.store import training_set
    from models.recsys.data import interactions_from_events

    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    interactions = interactions_from_events(events)
    if interactions.is_empty():
        raise ValueError("no view events to train on")
    first = events.group_by("user_id", "media_id").agg(first_ts=pl.col("ts").min())
    rows = interactions.join(first, on=["user_id", "media_id"]).sort("user_id", "media_id")
    entity = rows.select(
        "user_id",
        "media_id",
        event_timestamp=pl.col("first_ts").dt.truncate("1h") - pl.duration(microseconds=1),
    )
    features = training_set(settings, entity, [EXPOSURE_FEATURE])
    exposure = features[EXPOSURE_FEATURE.replace(":", "__")].cast(pl.Float64).fill_null(0.0)
    return (
        rows.with_columns(raw_weight=pl.col("weight"), exposure=exposure)
        .with_columns(weight=pl.col("raw_weight") / (1.0 + pl.col("exposure")) ** alpha)
        .select("user_id", "media_id", "weight", "last_ts", "first_ts", "raw_weight", "exposure")
    )


def platform_item_embeddings(settings: Settings) -> pl.DataFrame | None:
    """media_id + embedding from text_embeddings (MiniLM over title, description and transcript).

    None when the table is empty: content models are then skipped, not trained on nothing.
    """
    from models.lake.tables import read_table

    embeddings = read_table(settings, "text_embeddings", columns=["media_id", "embedding"])
    if embeddings.is_empty():
        return None
    return embeddings.with_columns(pl.col("embedding").cast(pl.List(pl.Float32))).sort("media_id")
