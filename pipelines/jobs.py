"""Jobs: per-item media processing (partitioned) and the catalog-wide analytics that follow."""

from __future__ import annotations

import dagster as dg

from assets.common import media_partitions

MEDIA_GROUPS = ("ingest", "transcode", "analysis")
ANALYTICS_GROUPS = ("datasets", "events", "analytics", "features", "training", "serving", "monitoring")

media_job = dg.define_asset_job(
    "media_job",
    selection=dg.AssetSelection.groups(*MEDIA_GROUPS),
    partitions_def=media_partitions,
    description="Ingest, transcode and analyse one media item (a partition per item).",
)
analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.groups(*ANALYTICS_GROUPS),
    description="Events, QoE analytics, features, training, the published API snapshots and the model "
    "drift report, over the whole catalog.",
)
hourly_stats_job = dg.define_asset_job(
    "hourly_stats_job",
    selection=dg.AssetSelection.assets("view_events", "hourly_stats", "user_stats", "co_watch"),
    description="Refresh view events and their hourly aggregates.",
)
ml100k_evaluation_job = dg.define_asset_job(
    "ml100k_evaluation_job",
    selection=dg.AssetSelection.groups("evaluation") | dg.AssetSelection.assets("movielens_100k"),
    description=(
        "Offline evaluation: every catalog recommender on MovieLens-100K under the named protocols "
        "(tuned, logged to MLflow streamlake-recs/ml100k), and that dataset's champion. Kept out of "
        "analytics_job (and so out of `make demo`): tuning every model on ML-100K takes minutes on 2 cores."
    ),
)
training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups("features", "training", "serving"),
    description="Daily: features, recommender training, champion selection, API snapshots.",
)
monitoring_job = dg.define_asset_job(
    "monitoring_job",
    selection=dg.AssetSelection.groups("monitoring"),
    description="Model drift: feature and score PSI between the latest window of view events and the "
    "one before, and the champion's online NDCG@10. Kept out of training_job, which its sensor "
    "requests: a retrain does not change the events, so drift re-measured after it would ask again.",
)
