"""What every asset module shares: the media partitions, the settings resource, metadata helpers.

These live here rather than in pipelines/ because asset decorators need them and imports flow
models <- assets <- pipelines.
"""

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from models.lake.schemas import ALL_TABLES
from models.lake.tables import WriteResult
from models.media import library
from models.media.probe import Probe, probe
from models.settings import Settings, get_settings

OWNER = "team:media-platform"
media_partitions = dg.DynamicPartitionsDefinition(name="media")


class StreamlakeResource(dg.ConfigurableResource):
    """Settings for the run: the profile from the environment, optionally a different data dir."""

    data_dir: str | None = None

    def settings(self) -> Settings:
        return get_settings(data_dir=self.data_dir) if self.data_dir else get_settings()


def table_schema(name: str) -> dg.TableSchema:
    """A lake table's columns, shown in the Dagster UI."""
    return dg.TableSchema(
        columns=[dg.TableColumn(field.name, str(field.type)) for field in ALL_TABLES[name].schema]
    )


def frame_schema(frame: pl.DataFrame) -> dg.TableSchema:
    """An in-memory output's columns, shown in the UI like a lake table's."""
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])


def table_metadata(name: str) -> dict:
    """Static asset metadata: the table's schema and description."""
    return {"dagster/column_schema": table_schema(name), "table": name}


def write_metadata(result: WriteResult, **extra: object) -> dict:
    """Materialization metadata: Delta version, rows written, row count (also as dagster/row_count)."""
    return {**result.metadata(), "dagster/row_count": result.row_count, **extra}


def table_asset(
    group: str,
    kinds: set[str],
    deps: Sequence[str | dg.AssetDep] = (),
    partitioned: bool = False,
    check_specs: Sequence[dg.AssetCheckSpec] = (),
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """An asset that owns the lake table of its own name: schema shown in the UI, owner, kinds, and
    any checks the asset's own step evaluates."""

    def wrap(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.asset(
            partitions_def=media_partitions if partitioned else None,
            deps=list(deps),
            group_name=group,
            metadata=table_metadata(fn.__name__),
            kinds={*kinds, "delta"},
            owners=[OWNER],
            check_specs=list(check_specs) or None,
        )(fn)

    return wrap


def media_asset(
    group: str, kinds: set[str], upstream: Sequence[str] = ("media_items",)
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """A per-item table asset, depending on the same partition of its upstream assets."""
    deps = [dg.AssetDep(name, partition_mapping=dg.IdentityPartitionMapping()) for name in upstream]
    return table_asset(group, kinds, deps, partitioned=True)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> dg.MetadataValue:
    """A small table for the Dagster UI's materialization metadata."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def progress_logger(context: dg.AssetExecutionContext, label: str) -> Callable[[float], None]:
    """Log long work's progress at every quarter (the Dagster run log is the operator's progress bar)."""
    reported = {0}

    def report(done: float) -> None:
        quarter = int(done * 4)
        if quarter not in reported:
            reported.add(quarter)
            context.log.info(f"{label}: {quarter * 25}% done")

    return report


def media_source(streamlake: StreamlakeResource, media_id: str) -> tuple[Settings, Path, Probe]:
    """The partition's stored upload, re-probed (cheap) so every stage forces the same demuxer."""
    settings = streamlake.settings()
    source = library.inside(settings.library, library.source_file(settings.library, media_id))
    return settings, source, probe(source)
