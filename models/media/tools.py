"""Running FFmpeg safely: argument lists only, a file-only protocol whitelist, a timeout and a
memory cap per process, and a one-line error when the tool is missing."""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with: sudo apt-get install -y ffmpeg   (or run `make install`)"
MEMORY_CAP_BYTES = 8 * 1024**3
# An encode splitting one decode to a whole 4K ladder holds a dozen encoders; SVT-AV1 alone
# reserves gigabytes of address space per instance (measured: the full 4K ladder needs > 8 GiB).
ENCODE_MEMORY_CAP_BYTES = 16 * 1024**3
STDERR_TAIL_LINES = 8


class ToolMissing(RuntimeError):
    """A system tool the pipeline needs is not on PATH."""


class FFmpegFailed(RuntimeError):
    """FFmpeg exited non-zero or ran past its time limit; the message carries its last words."""

    tail: str = ""  # the last lines of FFmpeg's stderr, kept with a failed rendition


def require(tool: str) -> str:
    """The tool's path, or a one-line error naming the install command."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"{tool} not found on PATH: {INSTALL_HINT}")
    return path


def _memory_cap(cap_bytes: int) -> Callable[[], None]:
    """A preexec hook capping the child's address space (a decoder bomb dies, not the machine)."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))


def _failure(args: Sequence[str], returncode: int, stderr: str) -> FFmpegFailed:
    lines = stderr.strip().splitlines()
    err = FFmpegFailed(f"{Path(args[0]).name} failed: {lines[-1] if lines else f'exit code {returncode}'}")
    err.tail = "\n".join(lines[-STDERR_TAIL_LINES:])
    return err


def run(args: Sequence[str], timeout_s: float, stdin: bytes | None = None) -> bytes:
    """Run an FFmpeg-family command (an argument list, never a shell string); return stdout."""
    return _execute(args, timeout_s, stdin)[0]


def run_for_log(args: Sequence[str], timeout_s: float) -> str:
    """Run a command whose answer is in its log (measuring filters such as ebur128); return stderr."""
    return _execute(args, timeout_s, None)[1]


def _execute(args: Sequence[str], timeout_s: float, stdin: bytes | None) -> tuple[bytes, str]:
    require(args[0])
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            timeout=timeout_s,
            preexec_fn=_memory_cap(MEMORY_CAP_BYTES),
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise FFmpegFailed(f"{Path(args[0]).name} ran past {timeout_s:.0f} s and was stopped") from err
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise _failure(args, done.returncode, stderr)
    return done.stdout, stderr


def run_with_progress(
    args: Sequence[str], timeout_s: float, total_s: float, report: Callable[[float], None]
) -> None:
    """Run an encode with `-progress pipe:1` and call report(fraction done) as it goes."""
    require(args[0])
    argv = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    with tempfile.TemporaryFile() as errors:
        cap = _memory_cap(ENCODE_MEMORY_CAP_BYTES)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, preexec_fn=cap)
        timed_out = threading.Event()
        timer = threading.Timer(timeout_s, lambda: (timed_out.set(), proc.kill()))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                key, _, value = line.decode("utf-8", "replace").strip().partition("=")
                if key == "out_time_us" and value.isdigit() and total_s > 0:
                    report(min(1.0, int(value) / 1e6 / total_s))
            proc.wait()
        finally:
            timer.cancel()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if timed_out.is_set():
        raise FFmpegFailed(f"{Path(args[0]).name} ran past {timeout_s:.0f} s and was stopped")
    if proc.returncode != 0:
        raise _failure(args, proc.returncode, stderr)


def graph_args(output: Any, *, overwrite: bool = False) -> list[str]:
    """The argument list for an ffmpeg-python output node: quiet (errors only), no stdin."""
    flags = ["-v", "error", "-nostdin", *(["-y"] if overwrite else [])]
    return [require("ffmpeg"), *output.global_args(*flags).get_args()]


def run_graph(output: Any, timeout_s: float, *, overwrite: bool = False) -> bytes:
    """Run an ffmpeg-python output node; return stdout."""
    return run(graph_args(output, overwrite=overwrite), timeout_s)
