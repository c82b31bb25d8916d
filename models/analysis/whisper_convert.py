"""Turn a CTranslate2 Whisper folder into an openai-whisper checkpoint, once, cached on disk.

The only Whisper weights that work offline are the CTranslate2 copy a pip package ships, and
CTranslate2 cannot export weights, so model.bin is parsed here (the layout written by
`ctranslate2.specs.model_spec.ModelSpec._serialize`, binary version 6) and renamed into
openai-whisper's state_dict. The result is a plain `torch.save` checkpoint that
`whisper.load_model(path)` reads, plus the alignment heads it needs for word timestamps.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import struct
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

CONVERTER_VERSION = 1  # bump when the mapping changes: it is part of the cache file name
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is read as its raw bits.
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, np.uint16)
_BFLOAT16 = 5


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        length = self.take("H")  # includes the trailing NUL
        text = self.data[self.offset : self.offset + length - 1].decode("utf-8")
        self.offset += length
        return text

    def array(self, dims: list[int], type_id: int) -> np.ndarray:
        nbytes = self.take("I")
        if type_id >= len(_DTYPES):
            raise ValueError(f"unknown CTranslate2 dtype id {type_id}")
        dtype = _DTYPES[type_id]
        values = np.frombuffer(self.data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize,
                               offset=self.offset)  # fmt: skip
        self.offset += nbytes
        if type_id == _BFLOAT16:  # the top half of a float32
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return values.reshape(dims)


def read_ct2(model_bin: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Spec name and every variable of a CTranslate2 model.bin, aliases resolved, int8 dequantized."""
    reader = _Reader(model_bin.read_bytes())
    version = reader.take("I")
    if version < 5:
        raise ValueError(f"{model_bin}: CTranslate2 binary version {version} is too old (need 5 or 6)")
    spec = reader.string()
    reader.take("I")  # spec revision
    raw: dict[str, np.ndarray] = {}
    for _ in range(reader.take("I")):
        name = reader.string()
        dims = [reader.take("I") for _ in range(reader.take("B"))]
        raw[name] = reader.array(dims, reader.take("B"))
    for _ in range(reader.take("I")):
        alias, target = reader.string(), reader.string()
        raw[alias] = raw[target]
    if reader.offset != len(reader.data):
        raise ValueError(f"{model_bin}: {len(reader.data) - reader.offset} trailing bytes (corrupt file?)")
    return spec, _dequantize(raw)


def _dequantize(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CTranslate2 quantizes as round(w * scale) per output row (model_spec._quantize); undo it."""
    out = {}
    for name, value in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None and value.dtype in (np.int8, np.int16):
            shape = (-1,) + (1,) * (value.ndim - 1) if scale.ndim else ()
            value = value.astype(np.float32) / scale.astype(np.float32).reshape(shape)
        out[name] = value
    return out


def _split_rows(weight: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(weight, parts, axis=0)


def _attention(out: dict[str, np.ndarray], v: dict[str, np.ndarray], src: str, dst: str, fused: int) -> None:
    """CTranslate2 fuses q/k/v (self-attention, linear_0) or k/v (cross-attention, linear_1);
    openai-whisper keeps them apart. Its key projection has no bias: the converter fused in zeros,
    and any key bias would add the same q·b to every score of a query, which softmax ignores."""
    names = ["query", "key", "value"][3 - fused :]
    layer = 0 if fused == 3 else 1
    for name, w, b in zip(
        names,
        _split_rows(v[f"{src}/linear_{layer}/weight"], fused),
        _split_rows(v[f"{src}/linear_{layer}/bias"], fused),
        strict=True,
    ):
        out[f"{dst}.{name}.weight"] = w
        if name != "key":
            out[f"{dst}.{name}.bias"] = b
    if fused == 2:
        out[f"{dst}.query.weight"] = v[f"{src}/linear_0/weight"]
        out[f"{dst}.query.bias"] = v[f"{src}/linear_0/bias"]
    last = 1 if fused == 3 else 2
    out[f"{dst}.out.weight"] = v[f"{src}/linear_{last}/weight"]
    out[f"{dst}.out.bias"] = v[f"{src}/linear_{last}/bias"]


def _norm(out: dict[str, np.ndarray], v: dict[str, np.ndarray], src: str, dst: str) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _block(out: dict[str, np.ndarray], v: dict[str, np.ndarray], src: str, dst: str, cross: bool) -> None:
    """One residual block: CTranslate2's self_attention/attention/ffn, each with its pre-norm."""
    _attention(out, v, f"{src}/self_attention", f"{dst}.attn", fused=3)
    _norm(out, v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    if cross:
        _attention(out, v, f"{src}/attention", f"{dst}.cross_attn", fused=2)
        _norm(out, v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
    for i, mlp in ((0, 0), (1, 2)):  # openai's mlp is Sequential(Linear, GELU, Linear)
        out[f"{dst}.mlp.{mlp}.weight"] = v[f"{src}/ffn/linear_{i}/weight"]
        out[f"{dst}.mlp.{mlp}.bias"] = v[f"{src}/ffn/linear_{i}/bias"]
    _norm(out, v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")


def _count(v: dict[str, np.ndarray], stack: str) -> int:
    return len({k.split("/")[1] for k in v if re.match(rf"{stack}/layer_\d+/", k)})


def to_openai(ct2_dir: Path) -> tuple[dict[str, int], dict[str, np.ndarray], list[list[int]]]:
    """ModelDimensions fields, the openai-whisper state_dict (numpy) and the alignment heads."""
    spec, v = read_ct2(ct2_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"{ct2_dir} holds a {spec}, not a Whisper model")
    n_audio_layer, n_text_layer = _count(v, "encoder"), _count(v, "decoder")
    out: dict[str, np.ndarray] = {}
    for name in ("conv1", "conv2"):
        out[f"encoder.{name}.weight"] = v[f"encoder/{name}/weight"]
        out[f"encoder.{name}.bias"] = v[f"encoder/{name}/bias"]
    out["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(n_audio_layer):
        _block(out, v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    _norm(out, v, "encoder/layer_norm", "encoder.ln_post")
    out["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        _block(out, v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    _norm(out, v, "decoder/layer_norm", "decoder.ln")
    projection = v.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(projection, v["decoder/embeddings/weight"]):
        raise ValueError("output projection not tied to the token embedding; openai-whisper needs it tied")
    conv1 = v["encoder/conv1/weight"]
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(n_audio_ctx),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(n_vocab),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(n_text_state),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    config = json.loads((ct2_dir / "config.json").read_text()) if (ct2_dir / "config.json").exists() else {}
    half = range(n_text_layer // 2, n_text_layer)  # openai-whisper's own default: the last half
    heads = config.get("alignment_heads") or [[i, h] for i in half for h in range(dims["n_text_head"])]
    return dims, out, [[int(layer), int(head)] for layer, head in heads]


@cache
def _digest(model_bin: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(model_bin, "rb") as fh:
        while chunk := fh.read(1 << 22):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def checkpoint_path(ct2_dir: str | Path, cache_dir: Path) -> Path:
    """Where the converted checkpoint lives: named by the source weights' content, so a changed
    model.bin (or converter) gets a new file instead of a stale one."""
    model_bin = Path(ct2_dir) / "model.bin"
    stat = model_bin.stat()
    digest = _digest(str(model_bin.resolve()), stat.st_size, stat.st_mtime_ns)
    return Path(cache_dir) / f"openai-whisper-{digest}-v{CONVERTER_VERSION}.pt"


def is_valid(path: Path) -> bool:
    """torch.save writes a zip with CRCs; a truncated or flipped file fails this without torch."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None and any(n.endswith("data.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def encode_alignment_heads(heads: list[list[int]], n_layer: int, n_head: int) -> bytes:
    """The base85(gzip(bool mask)) form that `Whisper.set_alignment_heads` reads."""
    mask = np.zeros((n_layer, n_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def ensure_checkpoint(ct2_dir: str | Path, cache_dir: Path) -> Path:
    """The cached checkpoint, converted only when missing or damaged; written to a temp file in the
    same folder and renamed, so readers never see half a file and concurrent converters both win."""
    import torch

    target = checkpoint_path(ct2_dir, cache_dir)
    if target.exists() and is_valid(target):
        return target
    dims, state, heads = to_openai(Path(ct2_dir))
    # Kept at the source's precision (float16, as openai-whisper ships its own checkpoints; float32 for
    # float32 or dequantized sources): load_state_dict casts into the model's float32 parameters.
    tensors = {
        k: torch.from_numpy(np.array(a, dtype=np.float16 if a.dtype == np.float16 else np.float32))
        for k, a in state.items()
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"dims": dims, "model_state_dict": tensors, "alignment_heads": heads}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared by workers
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_openai_whisper(ct2_dir: str | Path, cache_dir: Path, device: str = "cpu") -> Any:
    """An openai-whisper model on the CTranslate2 folder's weights, alignment heads set. Built like
    `whisper.load_model(path)` does, reading the file once; a file that passes its CRCs but still
    does not load is converted again."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    path = ensure_checkpoint(ct2_dir, cache_dir)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError):
        path.unlink(missing_ok=True)
        path = ensure_checkpoint(ct2_dir, cache_dir)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    dims = ModelDimensions(**checkpoint["dims"])
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    model.set_alignment_heads(encode_alignment_heads(checkpoint["alignment_heads"], dims.n_text_layer,
                                                     dims.n_text_head))  # fmt: skip
    return model.to(device)
