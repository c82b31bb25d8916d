"""Per-shot video embeddings (and Kinetics labels when the checkpoint has a classifier) with VideoMAE.

Frames come from our guarded FFmpeg process (forced demuxer, file-only protocol, timeout and memory
cap), never from a video reader that would open the upload with libavformat's auto-detection. The
model is any `MCG-NJU/videomae-*` layout: a local folder, or a hub name already in the Hugging Face
cache; nothing is downloaded at run time, and no random weights stand in for a missing checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.media import tools
from models.media.probe import Probe, safe_input
from models.settings import apply_offline_env, ray_runtime_env

log = logging.getLogger("streamlake.videomae")

FRAMES_PER_CLIP = 16  # VideoMAE's num_frames for every released checkpoint
CLIP_SIZE = 224  # VideoMAE's crop size
TOP_K = 5
# Selected frames per FFmpeg run: bounds the select expression (~14 bytes a frame, far below the
# kernel's 128 KiB per-argument limit), its per-frame evaluation cost, and the raw stdout held at once.
MAX_FRAMES_PER_RUN = 1024
CLASSIFIER_ARCHITECTURE = "VideoMAEForVideoClassification"

Label = tuple[str, float]


class CheckpointUnavailable(OSError):
    """The VideoMAE checkpoint is not a readable folder and cannot be loaded from the local cache."""


@dataclass(frozen=True)
class ClipResults:
    embeddings: np.ndarray  # (n, hidden) float32, L2-normalised
    labels: list[list[Label]] | None  # top-5 (label, probability) per clip; None without a classifier


def clip_frame_numbers(
    shots: Sequence[tuple[float, float]], fps: float, frames_per_clip: int = FRAMES_PER_CLIP
) -> np.ndarray:
    """Frame numbers (n_shots, frames_per_clip): the middle frame of equal segments of each shot.

    Shot bounds are frame starts (detect_shots cuts on frames), so they are rounded to frame numbers;
    a shot shorter than `frames_per_clip` frames repeats frames rather than borrowing its neighbours'.
    """
    numbers = np.zeros((len(shots), frames_per_clip), dtype=np.int64)
    slots = np.arange(frames_per_clip)
    for row, (start_s, end_s) in enumerate(shots):
        if not 0 <= start_s < end_s:
            raise ValueError(f"shot {row} has no running time: {start_s} .. {end_s} s")
        first = round(start_s * fps)
        count = max(1, round(end_s * fps) - first)
        numbers[row] = first + (2 * slots + 1) * count // (2 * frames_per_clip)
    return numbers


def _filter_chain(stream: Any, wanted: Sequence[int], size: int, fit: str) -> Any:
    expr = "+".join(f"eq(n,{n})" for n in wanted)
    stream = stream.filter("select", expr)  # before scaling: only the chosen frames are scaled
    if fit == "pad":
        stream = stream.filter("scale", size, size, force_original_aspect_ratio="decrease")
        stream = stream.filter("pad", size, size, "(ow-iw)/2", "(oh-ih)/2")
    else:  # VideoMAE's own preprocessing: shortest edge to size, centre crop
        stream = stream.filter("scale", size, size, force_original_aspect_ratio="increase")
        stream = stream.filter("crop", size, size)
    return stream.filter("setsar", 1)


def sample_clip_frames(
    source: Path,
    probed: Probe,
    shots: Sequence[tuple[float, float]],
    timeout_s: float,
    frames_per_clip: int = FRAMES_PER_CLIP,
    size: int = CLIP_SIZE,
    fit: str = "crop",
) -> np.ndarray:
    """`frames_per_clip` frames evenly spaced inside each shot, rgb24, (n_shots, frames, size, size, 3).

    One guarded FFmpeg run decodes the video once, selects frames by number (`select=eq(n,..)+..`,
    passthrough timing so nothing is duplicated or dropped) and scales only those. Frame numbers, not
    timestamps, because they do not depend on a container's start offset; clips with more than
    MAX_FRAMES_PER_RUN distinct frames take one run per that many, sharing the one `timeout_s`.
    Frames past the real end of a file whose probed duration lies repeat the last decoded frame.
    """
    if fit not in ("crop", "pad"):
        raise ValueError(f"fit must be 'crop' or 'pad', not {fit!r}")
    numbers = clip_frame_numbers(shots, probed.fps, frames_per_clip)
    if not len(numbers):
        return np.zeros((0, frames_per_clip, size, size, 3), dtype=np.uint8)
    wanted = np.unique(numbers)
    frame_bytes = size * size * 3
    decoded: list[np.ndarray] = []
    deadline = time.monotonic() + timeout_s
    for begin in range(0, len(wanted), MAX_FRAMES_PER_RUN):
        part = wanted[begin : begin + MAX_FRAMES_PER_RUN].tolist()
        stream = _filter_chain(safe_input(source, probed.demuxer).video, part, size, fit).output(
            "-", f="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", **{"frames:v": len(part)}
        )  # frames:v stops the decode at the last chosen frame
        left = deadline - time.monotonic()
        if left <= 0:
            raise tools.FFmpegFailed(f"ffmpeg ran past {timeout_s:.0f} s and was stopped")
        raw = tools.run_graph(stream, left)
        got = min(len(raw) // frame_bytes, len(part))
        frames = np.frombuffer(raw, dtype=np.uint8, count=got * frame_bytes)
        decoded.append(frames.reshape(got, size, size, 3))
        if got < len(part):
            break  # the file ended: later runs would find nothing either
    frames = np.concatenate(decoded)
    if not len(frames):
        raise tools.FFmpegFailed(f"no frames decoded from {source.name} at the shots' frame numbers")
    index = np.minimum(np.searchsorted(wanted, numbers), len(frames) - 1)
    return frames[index]


def _locate(checkpoint: str) -> str:
    """A local checkpoint folder as an absolute path (Ray workers need it), or the hub name as is."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointUnavailable(f"{path} is not a VideoMAE checkpoint folder: it has no config.json")
        return str(path.resolve())
    if path.exists() or checkpoint.startswith(("/", ".", "~")) or checkpoint.count("/") > 1:
        raise CheckpointUnavailable(f"no VideoMAE checkpoint folder at {checkpoint}")
    return checkpoint


def _unavailable(location: str, err: OSError) -> CheckpointUnavailable:
    from huggingface_hub import constants

    if Path(location).is_dir():
        return CheckpointUnavailable(f"VideoMAE checkpoint folder {location} could not be loaded: {err}")
    if constants.HF_HUB_OFFLINE:
        return CheckpointUnavailable(
            f"VideoMAE checkpoint {location!r} is not a local folder nor in the Hugging Face cache, and "
            "HF_HUB_OFFLINE=1 (set by models.settings: no network at run time) forbids downloading it; "
            "pass a folder holding config.json, the weights and preprocessor_config.json "
            f"(a copy of {location})"
        )
    return CheckpointUnavailable(f"VideoMAE checkpoint {location!r} could not be loaded: {err}")


@lru_cache(maxsize=2)
def _load(location: str, device: str) -> tuple[Any, Any, list[str] | None]:
    import torch
    import transformers as tf

    dtype = torch.float16 if device == "cuda" else torch.float32
    try:
        config = tf.VideoMAEConfig.from_pretrained(location)
        classifier = CLASSIFIER_ARCHITECTURE in (config.architectures or []) and bool(config.id2label)
        cls = tf.VideoMAEForVideoClassification if classifier else tf.VideoMAEModel
        model = cls.from_pretrained(location, config=config, dtype=dtype)
        processor = tf.VideoMAEImageProcessor.from_pretrained(location)
    except OSError as err:
        raise _unavailable(location, err) from err
    model = model.to(device).eval()
    labels = [config.id2label[i] for i in range(config.num_labels)] if classifier else None
    log.info("loaded %s from %s on %s (%s)", cls.__name__, location, device, dtype)
    return model, processor, labels


def load_videomae(checkpoint: str) -> tuple[Any, Any, list[str] | None]:
    """(model, image processor, class labels or None), cached per process; on CUDA in fp16 when present.

    A checkpoint whose architectures name VideoMAEForVideoClassification (the Kinetics fine-tunes)
    keeps its head and labels; any other (the self-supervised `videomae-base`) loads as the encoder.
    """
    apply_offline_env()  # before huggingface_hub is first imported, so a hub name never reaches out
    import torch

    return _load(_locate(checkpoint), "cuda" if torch.cuda.is_available() else "cpu")


def embed_clips(clips: np.ndarray, checkpoint: str, batch_size: int = 4) -> ClipResults:
    """Clip embeddings (and top-5 labels with a classifier head), in batches of `batch_size` clips.

    The embedding is what the classifier sees: the mean of the last hidden state through the head's
    fc_norm, or the plain mean for an encoder-only checkpoint; L2-normalised, float32.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    model, processor, labels = load_videomae(checkpoint)
    config = model.config
    if clips.ndim != 5 or clips.shape[1] != config.num_frames or clips.shape[-1] != 3:
        raise ValueError(f"clips must be (n, {config.num_frames}, h, w, 3) rgb frames, not {clips.shape}")
    vectors: list[np.ndarray] = [np.zeros((0, config.hidden_size), dtype=np.float32)]
    top: list[list[Label]] = []
    batches = math.ceil(len(clips) / batch_size)
    for number, begin in enumerate(range(0, len(clips), batch_size), start=1):
        batch = clips[begin : begin + batch_size]
        pooled, scores, ids = _forward(model, processor, batch, labels is not None)
        vectors.append(pooled)
        if labels is not None:
            for row_ids, row_scores in zip(ids.tolist(), scores.tolist(), strict=True):
                top.append([(labels[i], s) for i, s in zip(row_ids, row_scores, strict=True)])
        log.info("videomae batch %d/%d: %d clips", number, batches, len(batch))
    return ClipResults(embeddings=np.concatenate(vectors), labels=top if labels is not None else None)


def _forward(model: Any, processor: Any, batch: np.ndarray, classify: bool) -> tuple[np.ndarray, Any, Any]:
    """One batch: (L2-normalised pooled features, top-k probabilities, top-k class ids)."""
    import torch

    param = next(model.parameters())
    inputs = processor(list(batch), return_tensors="pt", input_data_format="channels_last")
    with torch.inference_mode():
        hidden = model.base_model(inputs["pixel_values"].to(param.device, param.dtype)).last_hidden_state
        pooled = hidden.mean(1)
        fc_norm = getattr(model, "fc_norm", None)
        if fc_norm is not None:
            pooled = fc_norm(pooled)
        scores = ids = None
        if classify:  # the head exactly as VideoMAEForVideoClassification.forward runs it
            logits = model.classifier(pooled if fc_norm is not None else hidden[:, 0])
            probs = logits.float().softmax(-1)
            scores, ids = probs.topk(min(TOP_K, probs.shape[-1]), dim=-1)
        vectors = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
    return vectors, scores, ids


def embed_clips_on_ray(
    clips: np.ndarray,
    checkpoint: str,
    batch_size: int = 4,
    address: str | None = None,
    num_gpus: float | None = None,
) -> ClipResults:
    """embed_clips with one Ray task per batch, on the local Ray or the cluster at `address`.

    Tasks ask for a whole GPU when the cluster has one (`num_gpus` overrides), so CPU-only clusters
    schedule them anywhere. A local checkpoint folder must exist at the same path on every worker
    (a shared volume on a cluster); each worker process loads the model once.
    """
    import ray  # heavy: only when fan-out is asked for

    location = _locate(checkpoint)
    if not ray.is_initialized():
        ray.init(address=address, runtime_env=ray_runtime_env(), include_dashboard=False, log_to_driver=False)
    gpus = num_gpus if num_gpus is not None else (1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0)
    task = ray.remote(embed_clips).options(num_cpus=1, num_gpus=gpus)
    refs = [
        task.remote(clips[begin : begin + batch_size], location, batch_size)
        for begin in range(0, len(clips), batch_size)
    ]
    log.info("videomae on ray: %d tasks, %s GPU each", len(refs), gpus)
    if not refs:  # no clips: answered here, with embed_clips's shape checks and empty (0, hidden) result
        return embed_clips(clips, location, batch_size)
    parts: list[ClipResults] = ray.get(refs)
    labels = None if parts[0].labels is None else [row for part in parts for row in part.labels or []]
    return ClipResults(embeddings=np.concatenate([p.embeddings for p in parts]), labels=labels)
