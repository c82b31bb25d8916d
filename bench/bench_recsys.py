"""Every catalog recommender on MovieLens-100K in one run: training time and NDCG@10 / Recall@10
per model, TopPop and ItemKNN baselines included, under named protocols.

Protocol (a), the Microsoft Recommenders ML-100K protocol: per-user stratified random 75/25
split, seed 42, every item ranked with the user's training items removed, top-10. Each model is
tuned on a validation split carved from the training part (never the test part), refitted on the
whole training part and scored once on test; `train_s` is that final fit, `tuning_s` the whole
search + fit + evaluation + MLflow logging. Then (b) leave-last-out for the sequential models
against the baselines and EASE, and (c) cold-start items for the content and hybrid models.

Everything is logged to MLflow (experiment streamlake-recs/ml100k in the configured store, data/
by default) with fresh fits (no reuse of earlier versions), and the ML-100K champion alias is
offered the best model of (a). ours = the best model's NDCG@10 under (a), baseline = the better
of TopPop and ItemKNN, ratio = ours / baseline. `make recsys-table` then writes the README table
from these MLflow runs. Run from the repository root: `python bench/bench_recsys.py`
(`--models ease,itemknn --protocols a` for a subset, `--data-dir` for another data folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _result import run_stamp, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.datasets.movielens import import_ml100k  # noqa: E402
from models.recsys import catalog  # noqa: E402
from models.recsys.evaluation import (  # noqa: E402
    ML100K_COLD_START_PROTOCOL,
    ML100K_PROTOCOL,
    ML100K_SEQUENTIAL_PROTOCOL,
    Protocol,
    code_version,
)
from models.recsys.registry import ML100K, TrainedRun, promote_best  # noqa: E402
from models.recsys.tuning import ML100K_MODELS, ML100K_TRIALS, default_metric, ml100k_runs  # noqa: E402
from models.settings import get_settings  # noqa: E402

PROTOCOLS: dict[str, Protocol] = {
    "a": ML100K_PROTOCOL,
    "b": ML100K_SEQUENTIAL_PROTOCOL,
    "c": ML100K_COLD_START_PROTOCOL,
}
GOAL_NDCG = 0.48


def row(run: TrainedRun, protocol: Protocol) -> dict[str, object]:
    prefix = "cold_" if protocol.kind == "cold_start_items" else ""
    k = protocol.k
    metrics = {
        name: round(run.metrics[f"{prefix}{name}"], 4)
        for name in (f"ndcg_at_{k}", f"recall_at_{k}", f"precision_at_{k}", f"map_at_{k}", "coverage")
        if f"{prefix}{name}" in run.metrics
    }
    return {
        "model": run.model,
        **metrics,
        "train_s": round(run.metrics["train_seconds"], 2),
        "tuning_s": round(run.wall_seconds, 1),
        "params": {k_.removeprefix("model."): v for k_, v in run.params.items() if k_.startswith("model.")},
        "mlflow_run_id": run.run_id,
        "model_version": run.model_version,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated catalog names (default: every available one)")
    parser.add_argument("--protocols", default="abc", help="any of a, b, c (default abc)")
    parser.add_argument("--trials", type=int, default=ML100K_TRIALS, help="tuning candidates per model")
    parser.add_argument("--data-dir", type=Path, help="data folder (lake + MLflow store); default data/")
    args = parser.parse_args(argv)
    settings = get_settings(data_dir=args.data_dir) if args.data_dir else get_settings()
    wanted = args.models.split(",") if args.models else None

    started = time.perf_counter()
    import_ml100k(settings)
    results: dict[str, dict[str, object]] = {}
    champion = None
    for key in args.protocols:
        protocol = PROTOCOLS[key]
        names = [n for n in ML100K_MODELS[protocol.kind] if wanted is None or n in wanted]
        names = [e.name for e in catalog.available(names)]
        if not names:
            continue
        print(f"({key}) {protocol.describe()}: {', '.join(names)}", flush=True)
        split, runs = ml100k_runs(settings, protocol, names=names, max_trials=args.trials, reuse=False)
        rows = [row(run, protocol) for run in runs]
        metric = default_metric(protocol).removeprefix("cold_")
        for r in sorted(rows, key=lambda r: -float(r.get(metric, 0.0))):
            print(
                f"  {r['model']:<8} {metric} {r.get(metric)}  recall_at_10 {r.get('recall_at_10')}  "
                f"train {r['train_s']} s  (tuning+logging {r['tuning_s']} s)",
                flush=True,
            )
        results[protocol.name] = {
            "protocol": protocol.describe(),
            "seed": protocol.seed,
            "dataset_hash": split.dataset_hash,
            "split_hash": split.split_hash,
            "train_rows": split.train.height,
            "test_rows": split.test.height,
            "models": rows,
        }
        if protocol == ML100K_PROTOCOL:
            champion = promote_best(settings, [run.model_version for run in runs], dataset=ML100K)

    main_name = ML100K_PROTOCOL.name
    if main_name not in results:
        print(json.dumps(results, indent=2))
        return
    rows = results[main_name]["models"]  # type: ignore[index]
    best = max(rows, key=lambda r: r["ndcg_at_10"])
    baselines = [r for r in rows if r["model"] in catalog.BASELINES]
    baseline = max(baselines, key=lambda r: r["ndcg_at_10"]) if baselines else None
    result = {
        "name": "recsys_ml100k",
        "ours": best["ndcg_at_10"],
        "baseline": baseline["ndcg_at_10"] if baseline else None,
        "ratio": round(best["ndcg_at_10"] / baseline["ndcg_at_10"], 2) if baseline else None,
        "unit": (
            f"NDCG@10 on MovieLens-100K, {ML100K_PROTOCOL.describe()} (ours: best catalog model, "
            f"{best['model']}; baseline: best of TopPop/ItemKNN, {baseline['model'] if baseline else '-'})"
        ),
        **run_stamp(),
        "params": {
            "protocol": ML100K_PROTOCOL.describe(),
            "seed": ML100K_PROTOCOL.seed,
            "dataset_hash": results[main_name]["dataset_hash"],
            "code_version": code_version(),
            "data": "MovieLens-100K from the recbole wheel, each rating an interaction weighted rating / 3.5",
            "tuning": f"up to {args.trials} candidates per model on a validation split carved from train",
            "goal_ndcg_at_10": GOAL_NDCG,
            "goal_met": best["ndcg_at_10"] >= GOAL_NDCG,
            "ml100k_champion": {"version": champion.champion, "promoted": champion.promoted}
            if champion
            else None,
            "mlflow": f"{settings.mlflow_uri} experiment streamlake-recs/{ML100K}",
            "wall_s": round(time.perf_counter() - started, 1),
            "results": results,
        },
    }
    out = ROOT / "bench" / "results" / "recsys.json"
    write_result(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "params"}, indent=2))


if __name__ == "__main__":
    main()
