"""A real Prometheus for integration tests: backfill OpenMetrics with promtool, serve it on 127.0.0.1.

Shared by every test that needs a real server. Without the binaries the tests
skip, unless CAPSIM_REQUIRE_PROMETHEUS=1 (set by .ci/run), where a missing
binary fails them: CI must never pass by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT_S = 30.0


def binaries() -> tuple[str, str]:
    """Paths of `prometheus` and `promtool`; skip the test (fail if CAPSIM_REQUIRE_PROMETHEUS=1) without."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    message = "prometheus/promtool not installed (apt-get install prometheus)"
    if os.environ.get("CAPSIM_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message + "; CAPSIM_REQUIRE_PROMETHEUS=1 requires them")
    pytest.skip(message)


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """Turn an OpenMetrics file into TSDB blocks in `data_dir`, as a user would with their history."""
    _, promtool = binaries()
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"promtool backfill failed:\n{done.stdout}\n{done.stderr}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str, at_s: float) -> list[dict[str, Any]]:
        return list(self.api("query", query=promql, time=at_s)["result"])

    def query_range(self, promql: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=promql, start=start_s, end=end_s, step=step_s)["result"])


@contextmanager
def serve(data_dir: Path) -> Iterator[Server]:
    """Run Prometheus over `data_dir` on a free 127.0.0.1 port (no scrape targets) until the block exits."""
    prometheus, _ = binaries()
    config = data_dir.parent / f"{data_dir.name}-prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = _free_port()
    log = (data_dir.parent / f"{data_dir.name}-prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=3650d",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError(
                    "prometheus did not become ready:\n" + Path(log.name).read_text()[-2000:]
                )
            time.sleep(0.2)
        yield Server(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
