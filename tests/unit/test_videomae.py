"""VideoMAE clip sampling through our FFmpeg guard, and embeddings from a tiny random checkpoint.

The checkpoint here is random weights in the real `MCG-NJU/videomae-*` layout: it checks shapes,
batching, the head and the Ray path, never what the model sees. It lives in the tests only: the
platform never stands random weights in for a missing model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.analysis import videomae
from models.analysis.videomae import (
    CheckpointUnavailable,
    ClipResults,
    clip_frame_numbers,
    embed_clips,
    embed_clips_on_ray,
    load_videomae,
    sample_clip_frames,
)
from models.media import tools
from models.media.probe import probe
from models.media.samples import BITEXACT, H264

SIZE = 32  # the tiny checkpoint's image size: the processor then only rescales and normalises
SEGMENTS = (
    "testsrc2=size=320x180:rate=25",
    "mandelbrot=size=320x180:rate=25",
    "smptebars=size=320x180:rate=25",
)
SHOTS = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
LABELS = ("archery", "bowling", "juggling balls", "surfing water", "tap dancing", "yoga", "zumba")
# Luma 16 + 2n on frame n (lossless): decoded rgb is 2n * 255/219, so each frame names its number.
RAMP = "color=c=black:size=64x48:rate=25:duration=3,format=yuv420p,geq=lum='16+2*N':cb=128:cr=128"
RGB_PER_FRAME = 2 * 255 / 219


def _ffmpeg(*args: str) -> None:
    tools.run([tools.require("ffmpeg"), "-v", "error", "-nostdin", "-y", *args], timeout_s=120)


def write_tiny_checkpoint(folder: Path, with_classifier: bool) -> str:
    """A random VideoMAE (32 px, 2 layers of 32) saved as save_pretrained lays out the real ones."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    head = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    config = tf.VideoMAEConfig(
        image_size=SIZE, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, **(head if with_classifier else {}),
    )  # fmt: skip
    model = (tf.VideoMAEForVideoClassification if with_classifier else tf.VideoMAEModel)(config)
    model.save_pretrained(folder)
    crop = {"height": SIZE, "width": SIZE}
    tf.VideoMAEImageProcessor(size={"shortest_edge": SIZE}, crop_size=crop).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 1 s lavfi segments back to back (cuts at 1 s and 2 s), and a 3 s frame-number ramp."""
    folder = tmp_path_factory.mktemp("videomae")
    inputs = [arg for source in SEGMENTS for arg in ("-f", "lavfi", "-t", "1", "-i", source)]
    _ffmpeg(
        *inputs, "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0", *H264, *BITEXACT,
        str(folder / "three.mp4"),
    )  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", RAMP, "-c:v", "libx264", "-qp", "0", *BITEXACT, str(folder / "ramp.mp4"))
    return {path.stem: path for path in folder.iterdir()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "encoder": write_tiny_checkpoint(folder / "encoder", with_classifier=False),
        "kinetics": write_tiny_checkpoint(folder / "kinetics", with_classifier=True),
    }


@pytest.fixture(scope="module")
def clips(media: dict[str, Path]) -> np.ndarray:
    return sample_clip_frames(media["three"], probe(media["three"]), SHOTS, timeout_s=60, size=SIZE)


def _names(found: ClipResults) -> list[list[str]]:
    return [[name for name, _ in row] for row in found.labels or []]


def _frame_numbers(frames: np.ndarray) -> np.ndarray:
    return np.round(frames.astype(np.float64).mean(axis=(-3, -2, -1)) / RGB_PER_FRAME).astype(int)


def test_clips_are_sixteen_square_rgb_frames_per_shot(clips: np.ndarray) -> None:
    assert clips.shape == (3, 16, SIZE, SIZE, 3)
    assert clips.dtype == np.uint8
    means = clips.reshape(3, -1).astype(np.float64).mean(axis=1)
    assert len({round(m) for m in means}) == 3, "the three shots' frames should differ"
    assert all(np.abs(a.astype(int) - b).mean() > 10 for a, b in ((clips[0], clips[1]), (clips[1], clips[2])))


def test_frames_are_the_evenly_spaced_frame_numbers(media: dict[str, Path]) -> None:
    probed = probe(media["ramp"])
    shots = [(0.0, 1.0), (1.0, 1.2), (1.2, 3.0)]  # the middle shot is 5 frames: they repeat
    frames = sample_clip_frames(media["ramp"], probed, shots, timeout_s=60, size=16)
    numbers = clip_frame_numbers(shots, probed.fps)
    assert np.array_equal(_frame_numbers(frames), numbers)
    assert numbers[0, 0] == 0 and numbers[0, -1] == 24 and np.all(np.diff(numbers[0]) > 0)
    assert sorted(set(numbers[1].tolist())) == [25, 26, 27, 28, 29]
    assert np.all(np.diff(numbers[1]) >= 0)


def test_many_frames_take_several_runs_with_the_same_frames(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = probe(media["ramp"])
    shots = [(0.0, 1.5), (1.5, 3.0)]
    whole = sample_clip_frames(media["ramp"], probed, shots, timeout_s=60, size=16)
    runs: list[int] = []
    run_graph = tools.run_graph
    monkeypatch.setattr(videomae, "MAX_FRAMES_PER_RUN", 7)
    monkeypatch.setattr(tools, "run_graph", lambda *a, **k: runs.append(1) or run_graph(*a, **k))
    assert np.array_equal(sample_clip_frames(media["ramp"], probed, shots, timeout_s=60, size=16), whole)
    assert len(runs) == 5  # 32 distinct frames, 7 a run


def test_frames_past_the_real_end_repeat_the_last_one(media: dict[str, Path]) -> None:
    probed = probe(media["ramp"])  # 75 frames; the second shot claims 50 more
    shots = [(0.0, 2.0), (2.0, 5.0)]
    frames = sample_clip_frames(media["ramp"], probed, shots, timeout_s=60, size=16)
    wanted = clip_frame_numbers(shots, probed.fps)[1]
    last = wanted[wanted < 75].max()
    assert _frame_numbers(frames[1]).tolist() == np.minimum(wanted, last).tolist()


def test_embeddings_are_normalised_and_differ_between_shots(clips: np.ndarray, checkpoints: dict) -> None:
    found = embed_clips(clips, checkpoints["encoder"])
    assert found.labels is None
    assert found.embeddings.shape == (3, 32)
    assert found.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(found.embeddings, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(found.embeddings[0], found.embeddings[1], atol=1e-4)


def test_batching_does_not_change_the_embeddings(clips: np.ndarray, checkpoints: dict) -> None:
    one = embed_clips(clips, checkpoints["kinetics"], batch_size=1)
    three = embed_clips(clips, checkpoints["kinetics"], batch_size=3)
    assert np.allclose(one.embeddings, three.embeddings, atol=1e-5)
    assert [[n for n, _ in row] for row in one.labels or []] == [
        [n for n, _ in row] for row in three.labels or []
    ]


def test_classifier_checkpoints_give_their_top_five_labels(clips: np.ndarray, checkpoints: dict) -> None:
    import torch

    found = embed_clips(clips, checkpoints["kinetics"])
    assert found.labels is not None and len(found.labels) == 3
    model, processor, labels = load_videomae(checkpoints["kinetics"])
    assert labels == list(LABELS)
    pixels = processor(list(clips), return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    with torch.inference_mode():
        probs = model(pixel_values=pixels).logits.softmax(-1)  # the library's own head, for reference
    for row, expected in zip(found.labels, probs, strict=True):
        assert len(row) == 5
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
        scores, ids = expected.topk(5)
        assert [n for n, _ in row] == [LABELS[i] for i in ids.tolist()]
        assert np.allclose([s for _, s in row], scores.numpy(), atol=1e-6)


def test_the_model_is_loaded_once_per_process(checkpoints: dict) -> None:
    assert load_videomae(checkpoints["encoder"])[0] is load_videomae(checkpoints["encoder"] + "/")[0]


def test_clips_of_the_wrong_length_are_refused(clips: np.ndarray, checkpoints: dict) -> None:
    with pytest.raises(ValueError, match=r"\(n, 16, h, w, 3\)"):
        embed_clips(clips[:, :8], checkpoints["encoder"])


def test_missing_checkpoints_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import: patch the value
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache whatever this machine holds
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(CheckpointUnavailable, match=r"HF_HUB_OFFLINE=1.*MCG-NJU/videomae-base"):
        load_videomae("MCG-NJU/videomae-base")
    with pytest.raises(CheckpointUnavailable, match="no VideoMAE checkpoint folder"):
        load_videomae(str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointUnavailable, match=r"has no config\.json"):
        load_videomae(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointUnavailable, match=f"folder {tmp_path} could not be loaded"):
        load_videomae(str(tmp_path))


@pytest.mark.slow
def test_ray_tasks_give_the_in_process_embeddings(clips: np.ndarray, checkpoints: dict) -> None:
    import ray

    from models.settings import ray_runtime_env

    local = embed_clips(clips, checkpoints["kinetics"])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=ray_runtime_env())  # fmt: skip
    try:
        remote = embed_clips_on_ray(clips, checkpoints["kinetics"], batch_size=2)
    finally:
        ray.shutdown()
    assert np.allclose(remote.embeddings, local.embeddings, atol=1e-5)
    assert [[n for n, _ in row] for row in remote.labels or []] == [
        [n for n, _ in row] for row in local.labels or []
    ]


def test_pad_keeps_the_whole_frame_between_black_bars(media: dict[str, Path]) -> None:
    probed = probe(media["three"])
    frames = sample_clip_frames(media["three"], probed, SHOTS[:1], timeout_s=60, size=32, fit="pad")
    assert frames.shape == (1, 16, 32, 32, 3)
    assert frames[0, :, :6].max() < 20 and frames[0, :, -6:].max() < 20  # 16:9 in a square: bars of 7 px
    assert frames[0, :, 10:22].mean() > 40
