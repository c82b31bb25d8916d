"""Running FFmpeg safely: argument lists only, a file-only protocol whitelist, a timeout and a
memory cap per process, and a one-line error when the tool is missing."""

from __future__ import annotations

import resource
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with: sudo apt-get install -y ffmpeg   (or run `make install`)"
MEMORY_CAP_BYTES = 8 * 1024**3


class ToolMissing(RuntimeError):
    """A system tool the pipeline needs is not on PATH."""


class FFmpegFailed(RuntimeError):
    """FFmpeg exited non-zero or ran past its time limit; the message carries its last words."""


def require(tool: str) -> str:
    """The tool's path, or a one-line error naming the install command."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"{tool} not found on PATH: {INSTALL_HINT}")
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def run(args: Sequence[str], timeout_s: float, stdin: bytes | None = None) -> bytes:
    """Run an FFmpeg-family command (an argument list, never a shell string); return stdout."""
    require(args[0])
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            timeout=timeout_s,
            preexec_fn=_limit_memory,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise FFmpegFailed(f"{Path(args[0]).name} ran past {timeout_s:.0f} s and was stopped") from err
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1] if lines else f"exit code {done.returncode}"
        raise FFmpegFailed(f"{Path(args[0]).name} failed: {last}")
    return done.stdout


def run_graph(output: Any, timeout_s: float, *, overwrite: bool = False) -> bytes:
    """Run an ffmpeg-python output node quietly (errors only, no stdin); return stdout."""
    flags = ["-v", "error", "-nostdin", *(["-y"] if overwrite else [])]
    return run([require("ffmpeg"), *output.global_args(*flags).get_args()], timeout_s)
