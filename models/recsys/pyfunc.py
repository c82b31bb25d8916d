"""A fitted recommender as an MLflow pyfunc model, so serving loads any champion the same way.

Kept apart from registry.py because subclassing PythonModel needs mlflow at import time, and
mlflow is slow to import; registry imports this module only when it logs a model. The model is
cloudpickled with a reference to this module, so loading it needs streamlake installed (serving
has it) and MLFLOW_ALLOW_PICKLE_DESERIALIZATION left at its default (true).
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd
import polars as pl
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from models.recsys.base import Recommender

OUTPUT_SCHEMA = {"user_id": pl.String, "rank": pl.Int64, "media_id": pl.String, "score": pl.Float64}

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "k")]),
    outputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "media_id"),
            ColSpec("double", "score"),
        ]
    ),
)


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Input rows (user_id, k) → top-k rows per user; a user asked twice gets the larger k."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        requests = (
            pl.from_pandas(pd.DataFrame(model_input)[["user_id", "k"]])
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("k").max())
        )
        if requests.is_empty():
            return pl.DataFrame(schema=OUTPUT_SCHEMA).to_pandas()
        recs = self.recommender.recommend(requests["user_id"].to_list(), int(requests["k"].max()))
        return (
            recs.join(requests, on="user_id", maintain_order="left")
            .filter(pl.col("rank") <= pl.col("k"))
            .select(pl.col(name).cast(dtype) for name, dtype in OUTPUT_SCHEMA.items())
            .to_pandas()
        )
