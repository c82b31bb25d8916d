"""Fan a ladder out as Ray tasks: one task per codec (each still decodes once and splits to that
codec's rungs), on the local Ray or the cluster at RAY_ADDRESS.

Tasks ask for a GPU share only when their encoder runs on one, so CPU-only clusters schedule them
anywhere. Every worker must see the media root at the same path (a shared volume on a cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from models.media import encoders, transcode
from models.media.ladder import LadderConfig
from models.media.probe import Probe
from models.settings import ray_runtime_env

log = logging.getLogger("streamlake.fanout")
GPU_SHARE = 0.25  # NVENC runs several sessions at once; four encode tasks share one GPU


def by_codec(jobs: Sequence[transcode.Job]) -> list[list[transcode.Job]]:
    """Jobs grouped by codec; the audio rendition rides with the first group."""
    groups: dict[str, list[transcode.Job]] = {}
    for job in jobs:
        groups.setdefault(job.plan.codec if job.plan else "", []).append(job)
    audio = groups.pop("", [])
    ordered = list(groups.values()) or [[]]
    ordered[0] = ordered[0] + audio
    return [g for g in ordered if g]


def encode_on_ray(
    source: Path,
    probed: Probe,
    jobs: Sequence[transcode.Job],
    ladder: LadderConfig,
    out_dir: Path,
    *,
    timeout_s: float,
    hwaccel: str,
    address: str | None,
) -> list[transcode.Outcome]:
    """Run each codec's encode as a Ray task and gather the outcomes in job order."""
    import ray  # heavy: only when fan-out is asked for

    if not ray.is_initialized():
        ray.init(address=address, runtime_env=ray_runtime_env(), include_dashboard=False, log_to_driver=False)
    task = ray.remote(transcode.encode)
    refs = []
    for group in by_codec(jobs):
        plan = group[0].plan
        gpu = plan is not None and encoders.select(plan.codec, hwaccel).uses_gpu
        options = {"num_cpus": 1, "num_gpus": GPU_SHARE if gpu else 0}
        log.info("ray task: %s on %s", [j.name for j in group], options)
        refs.append(
            task.options(**options).remote(
                source, probed, group, ladder, out_dir, timeout_s=timeout_s, hwaccel=hwaccel
            )
        )
    done = {o.job.name: o for outcomes in ray.get(refs) for o in outcomes}
    return [done[j.name] for j in jobs]
