"""`streamlake` command line: build the sample library and materialize the whole asset graph.

The Dagster CLI cannot materialize a graph that mixes partitioned and unpartitioned assets in
one call, so this runs the same jobs the UI runs: media_job once per item, then analytics_job and
ml100k_evaluation_job, recorded in the same Dagster instance (DAGSTER_HOME under data/) that `make dev` shows.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from models.settings import Settings, get_settings

SAMPLES_DIR = "samples"
# Dagster's console logger prints every step event at DEBUG; the CLI prints its own progress line
# per item (quarantine reasons included), so only errors come through from the runs.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _not_skipped_check_notice(record: logging.LogRecord) -> bool:
    """A quarantined item never materializes media_items, so its blocking check has nothing to
    check and Dagster says so for every downstream step (which it then skips anyway)."""
    return "emitted no result" not in record.getMessage()


def _instance(settings: Settings):  # -> dg.DagsterInstance
    """The persistent local instance, created with telemetry off on first use."""
    import dagster as dg

    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def seed_samples(settings: Settings) -> int:
    """Build the sample library and drop what the lake does not hold yet into the inbox."""
    from models.media.samples import build_samples, seed_inbox

    settings.ensure_dirs()
    built = build_samples(settings.data_dir / SAMPLES_DIR)
    known = {p.name for p in settings.library.iterdir()} | {p.name for p in settings.quarantine_dir.iterdir()}
    return len(seed_inbox(built, settings.inbox, known))


def _succeeded(instance, job_name: str, partition: str | None = None) -> bool:
    import dagster as dg

    tags = {"dagster/partition": partition} if partition else {}
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS], tags=tags), limit=1
    )
    return bool(runs)


def materialize_all(settings: Settings, force: bool = False, evaluation: bool = True) -> bool:
    """Admit the inbox, process every unprocessed item, then refresh the catalog-wide assets and
    (unless `evaluation` is False: minutes of tuning, and no input from the catalog) evaluate the
    recommenders on MovieLens-100K."""
    from models.media.library import REASON_FILE, admit, origin, stored_ids
    from pipelines.definitions import defs

    instance = _instance(settings)
    # one module-level function: addFilter ignores a filter it already holds, so repeats add none
    logging.getLogger("dagster._core.execution.plan.active").addFilter(_not_skipped_check_notice)
    settings.ensure_dirs()
    admit(settings.inbox, settings.library, quarantine_dir=settings.quarantine_dir)
    known = set(instance.get_dynamic_partitions("media"))
    instance.add_dynamic_partitions("media", [k for k in stored_ids(settings.library) if k not in known])
    partitions = sorted(set(instance.get_dynamic_partitions("media")))
    todo = [k for k in partitions if force or not _succeeded(instance, "media_job", k)]
    media_job = defs.resolve_job_def("media_job")
    ok = True
    print(f"media: {len(partitions)} items, {len(todo)} to process", flush=True)
    for i, key in enumerate(todo, 1):
        folder = settings.library / key if (settings.library / key).exists() else None
        name = origin(settings.library, key)["name"] if folder else "(quarantined)"
        started = time.perf_counter()
        result = media_job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
        )
        status = "ok" if result.success else "FAILED"
        held = settings.quarantine_dir / key / REASON_FILE
        if held.exists():
            status = f"quarantined: {held.read_text().strip()}"
        ok &= result.success
        print(
            f"  [{i}/{len(todo)}] {key} {name}: {status} ({time.perf_counter() - started:.1f} s)", flush=True
        )
    # analytics follows the catalog; the MovieLens-100K evaluation depends on no media, so once done
    # it stays done (its fingerprinted MLflow runs would be reused anyway)
    jobs = [("analytics_job", bool(todo))] + [("ml100k_evaluation_job", False)] * evaluation
    for job, stale in jobs:
        if not (stale or force or not _succeeded(instance, job)):
            print(f"{job.removesuffix('_job')}: up to date", flush=True)
            continue
        started = time.perf_counter()
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET
        )
        ok &= result.success
        status = "ok" if result.success else "FAILED"
        print(f"{job.removesuffix('_job')}: {status} ({time.perf_counter() - started:.1f} s)", flush=True)
    return ok


def summary(settings: Settings) -> str:
    """Tables, row counts and versions, and where to look next."""
    from models.lake.schemas import ALL_TABLES
    from models.lake.tables import open_table

    width = max(map(len, ALL_TABLES))
    lines = [f"lake: {settings.lake_root}", f"{'table':<{width}} {'rows':>8} {'version':>8}"]
    for name in ALL_TABLES:
        table = open_table(settings, name)
        rows = table.count() if table is not None else 0
        version = table.version() if table is not None else "-"
        lines.append(f"{name:<{width}} {rows:>8} {version:>8}")
    lines += [
        "",
        "next: make dev    -> Dagster UI on http://127.0.0.1:3000 (lineage, runs, asset checks)",
        "      make mlflow -> MLflow UI on http://127.0.0.1:5000 (runs, registered champion)",
        f"      make serve  -> API on http://{settings.serve_host}:{settings.serve_port}/docs",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamlake", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("samples", help="build the sample library and seed the inbox")
    for name, text in (
        ("demo", "samples + materialize everything + summary"),
        ("materialize", "materialize everything"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--force", action="store_true", help="re-run items already processed")
    commands.add_parser("summary", help="print the lake's tables and row counts")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command in ("samples", "demo"):
            print(f"samples: {seed_samples(settings)} new files in {settings.inbox}", flush=True)
        ok = True
        if args.command in ("demo", "materialize"):
            ok = materialize_all(settings, force=args.force)
        if args.command != "samples":
            print(summary(settings))
    except RuntimeError as err:  # missing tools and the like: one clear line, no traceback
        print(f"streamlake: {err}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
