"""The sandbox in its own process, driven over a pipe: ``SandboxProcess(videos=5000, latency_ms=20)``.

Why a separate process: the measured client must not share a GIL or an RSS figure with the server. Why
not the CLI: benchmarks change latency and limits between setup and measurement (a setup sync at 0 ms,
then the timed run at 20 ms) and read request counts, which the CLI's admin endpoints do not cover.

Protocol: one JSON command per line on stdin, one JSON answer per line on stdout. Credentials go only to
an env file (mode 0600) that the parent reads into the measured child's environment; they are never
printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer
from tiktok_organic_dagster.sandbox.cli import write_env_file


class SandboxProcess:
    """Parent-side handle; ``env`` holds the four TIKTOK_* variables for the measured process."""

    def __init__(self, workdir: Path, *, videos: int, latency_ms: float = 0.0, rate_limit: int = 0,
                 rate_window_seconds: float = 60.0, seed: int = 7) -> None:
        env_file = workdir / f"sandbox-{os.getpid()}-{id(self)}.env"
        spec = {"videos": videos, "latency_ms": latency_ms, "rate_limit": rate_limit,
                "rate_window_seconds": rate_window_seconds, "seed": seed, "env_file": str(env_file)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sandbox_proc", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
        )
        hello = self._read()
        self.base_url: str = hello["base_url"]
        self.env: dict[str, str] = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
        env_file.unlink()
        self.videos = videos

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sandbox process exited (code {self._proc.poll()})")
        return json.loads(line)

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self._proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"sandbox {op}: {answer['error']}")
        return answer

    def configure(self, **fields: Any) -> None:
        """Set SandboxConfig attributes (latency_ms, rate_limit, rate_window_seconds) on the live server."""
        self.call("configure", fields=fields)

    def add_videos(self, n: int) -> None:
        self.call("add_videos", n=n)
        self.videos += n

    def reset_counts(self) -> None:
        self.call("reset_counts")

    def create_times(self) -> list[int]:
        return self.call("create_times")["create_times"]

    def delete_video(self, index: int) -> None:
        self.call("delete_video", index=index)
        self.videos -= 1

    def bump_counters(self, fraction: float) -> int:
        return int(self.call("bump_counters", fraction=fraction)["changed"])

    def counts(self) -> dict[str, Any]:
        """``{"requests": {endpoint: n}, "statuses": {status: n}, "query_batch_sizes": [...]}``."""
        return self.call("counts")

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.call("exit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(spec: dict[str, Any]) -> None:
    config = SandboxConfig(video_count=spec["videos"], seed=spec["seed"], latency_ms=spec["latency_ms"],
                           rate_limit=spec["rate_limit"], rate_window_seconds=spec["rate_window_seconds"])
    server = SandboxServer(config).start()
    out = sys.stdout

    def answer(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    try:
        write_env_file(spec["env_file"], server)
        answer({"base_url": server.base_url})
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["op"]
            try:
                if op == "exit":
                    answer({"ok": True})
                    return
                if op == "configure":
                    for key, value in cmd["fields"].items():
                        if not hasattr(server.config, key):
                            raise ValueError(f"unknown SandboxConfig field {key}")
                        setattr(server.config, key, value)
                elif op == "add_videos":
                    server.add_videos(int(cmd["n"]))
                elif op == "create_times":  # ground truth, newest first
                    answer({"create_times": [v["create_time"] for v in server.videos()]})
                    continue
                elif op == "delete_video":  # by position, newest first
                    server.delete_video(server.videos()[int(cmd["index"])]["id"])
                elif op == "bump_counters":
                    answer({"changed": len(server.bump_counters(None, float(cmd["fraction"])))})
                    continue
                elif op == "reset_counts":
                    server.reset_counts()
                elif op == "counts":
                    answer({"requests": server.request_counts(),
                            "statuses": {str(k): v for k, v in server.status_counts().items()},
                            "query_batch_sizes": server.query_batch_sizes()})
                    continue
                else:
                    raise ValueError(f"unknown op {op}")
                answer({"ok": True})
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        server.stop()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
