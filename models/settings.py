"""One settings object for every stage, chosen by profile and overridden by environment.

The local profile keeps everything under one data folder (lake, MLflow store, Feast registry,
media); the cluster profile is the same code pointed at real engines through the usual
environment variables (RAY_ADDRESS, SPARK_REMOTE, MLFLOW_TRACKING_URI, object-store lake root).
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]

# No network at run time: libraries must not try to reach a hub or phone home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "FEAST_USAGE": "False",
    "DAGSTER_DISABLE_TELEMETRY": "1",
}


def apply_offline_env() -> None:
    """Set the no-network variables unless the caller already chose a value."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


# Tracing settings (serving/tracing.py) follow the driver to its workers, also on a remote cluster.
TRACING_ENV_PREFIXES = ("STREAMLAKE_OTEL_", "OTEL_")


def ray_runtime_env() -> dict[str, Any]:
    """Ray workers import this checkout's packages (installed or not), keep the no-network env and
    trace where the driver does."""
    path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    tracing = {key: value for key, value in os.environ.items() if key.startswith(TRACING_ENV_PREFIXES)}
    return {"env_vars": {**OFFLINE_ENV, **tracing, "PYTHONPATH": os.pathsep.join(path)}}


class Settings(BaseSettings):
    """Where data lives and which engines to use; every field has an env override."""

    model_config = SettingsConfigDict(env_prefix="STREAMLAKE_", extra="ignore")

    profile: Literal["local", "cluster"] = "local"
    data_dir: Path = REPO_ROOT / "data"
    lake_root_override: str | None = Field(
        default=None, validation_alias=AliasChoices("STREAMLAKE_LAKE_ROOT")
    )
    lake_storage_options_json: str | None = Field(
        default=None, validation_alias=AliasChoices("STREAMLAKE_LAKE_STORAGE_OPTIONS")
    )
    mlflow_uri_override: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    ray_address: str | None = Field(default=None, validation_alias=AliasChoices("RAY_ADDRESS"))
    spark_remote: str | None = Field(default=None, validation_alias=AliasChoices("SPARK_REMOTE"))
    feast_redis: str | None = Field(
        default=None,
        description="A Redis connection string (host:port[,password=…]) for Feast's online store; "
        "SQLite under the data dir when unset.",
    )
    rate_limit_redis: str | None = Field(
        default=None,
        description="A Redis connection string (host:port[,password=…]) holding the API's rate-limit "
        "buckets, shared by every Api replica; each replica keeps its own when unset.",
    )
    whisper_model: str | None = Field(
        default=None,
        description="Path to a CTranslate2 Whisper model; the bundled tiny.en when unset.",
    )
    asr_backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    shot_detector: Literal["transnetv2", "content", "adaptive", "threshold"] = "content"
    text_model: str | None = Field(
        default=None, description="A sentence-transformers folder; the bundled all-MiniLM-L6-v2 when unset."
    )
    videomae_checkpoint: str | None = Field(
        default=None, description="A MCG-NJU/videomae-* folder; clip embeddings are skipped when unset."
    )
    aggregate_engine: Literal["polars", "spark"] = Field(
        default="polars", description="Engine for the event aggregates; spark uses SPARK_REMOTE when set."
    )
    registered_model: str = "streamlake-recommender"
    drift_psi_threshold: float = Field(
        default=0.25,
        description="The model_drift check fails (and the drift sensor asks for retraining) when a "
        "feature's PSI exceeds this; 0.25 is the usual 'significant shift' mark.",
    )
    seed: int = 42
    ffmpeg_timeout_s: float = 600.0
    ladder_file: Path | None = Field(default=None, description="YAML ABR ladder (default: built in).")
    hwaccel: Literal["auto", "none", "nvenc", "qsv", "vaapi"] = Field(
        default="auto", description="Hardware encoders to try before software (auto tries all)."
    )
    transcode_fanout: Literal["process", "ray"] = Field(
        default="process",
        description="process: one FFmpeg decode split to every rung; ray: one Ray task per codec.",
    )
    per_title: bool = Field(default=False, description="Fit each rung's bitrate to the title (VMAF hull).")
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_ingress: Literal["haproxy", "proxy"] = Field(
        default="haproxy",
        description="haproxy: HAProxy straight to the Api replicas (fast); proxy: Serve's Python proxy.",
    )
    hls_js: Path = Field(
        default=REPO_ROOT / "node_modules/hls.js/dist/hls.min.js",
        description="hls.js for the player page (npm ci, run by make install; no CDN at run time).",
    )

    @cached_property
    def lake_root(self) -> str:
        """A local folder or an object-store URI (s3://, abfss://, gs://)."""
        return self.lake_root_override or str(self.data_dir / "lake")

    @cached_property
    def storage_options(self) -> dict[str, str]:
        return json.loads(self.lake_storage_options_json) if self.lake_storage_options_json else {}

    @property
    def media_root(self) -> Path:
        """Everything FFmpeg may read or write lies under this folder."""
        return self.data_dir / "media"

    @property
    def inbox(self) -> Path:
        return self.media_root / "inbox"

    @property
    def library(self) -> Path:
        """Admitted sources, content-addressed: library/<media_id>/<name>."""
        return self.media_root / "library"

    @property
    def quarantine_dir(self) -> Path:
        return self.media_root / "quarantine"

    @property
    def packaged(self) -> Path:
        """HLS renditions, posters and subtitles: packaged/<media_id>/..."""
        return self.media_root / "packaged"

    @property
    def models_dir(self) -> Path:
        """Model files we derive at run time (e.g. the openai-whisper checkpoint converted once)."""
        return self.data_dir / "models"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_uri_override or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def feast_repo(self) -> Path:
        return REPO_ROOT / "feature_repo"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    def ensure_dirs(self) -> None:
        for folder in (self.inbox, self.library, self.quarantine_dir, self.packaged):
            folder.mkdir(parents=True, exist_ok=True)


def get_settings(**overrides: object) -> Settings:
    """Fresh settings from the environment (cheap; never cached so tests can switch lakes)."""
    apply_offline_env()
    return Settings(**overrides)
