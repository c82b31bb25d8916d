"""Scoring graphs as ONNX, so a scorer can be served by onnxruntime without the training stack.

A model exports when it offers `torch_scorer()` (a torch module: one input tensor -> item scores)
and `onnx_inputs(users)` (that input for fitted users): EASE takes dense interaction rows, BPR
user indices, SASRec right-aligned item sequences. Export uses torch's default (torch.export
based) exporter, which needs the `onnx` and `onnxscript` packages; the batch axis is dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

INPUT = "input"
OUTPUT = "scores"


class OnnxExportable(Protocol):
    """A fitted recommender with an exportable scorer; _score_users is what the graph must match."""

    @property
    def known_users(self) -> frozenset[str]: ...

    def torch_scorer(self) -> Any: ...

    def onnx_inputs(self, users: np.ndarray) -> np.ndarray: ...

    def _score_users(self, users: np.ndarray) -> np.ndarray: ...


def export_onnx(model: OnnxExportable, path: Path | None = None) -> bytes:
    """The serialised ONNX model (also written to path when given)."""
    import torch

    example = torch.from_numpy(model.onnx_inputs(np.array([0, 0])))  # batch 2: torch.export keeps it dynamic
    program = torch.onnx.export(
        model.torch_scorer(),
        (example,),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    serialised = program.model_proto.SerializeToString()
    if path is not None:
        path.write_bytes(serialised)
    return serialised


def onnx_scores(onnx_model: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run the exported graph with onnxruntime on CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: inputs})[0]


def parity(model: OnnxExportable, onnx_model: bytes, users: np.ndarray | None = None) -> float:
    """Largest |onnxruntime - native| score over the given fitted users (all by default)."""
    chosen = np.arange(len(model.known_users)) if users is None else np.asarray(users)
    exported = onnx_scores(onnx_model, model.onnx_inputs(chosen))
    return float(np.max(np.abs(exported - model._score_users(chosen))))
