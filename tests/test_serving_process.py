"""The service as a real process: `recstack serve` on uvicorn, killed with SIGKILL in the
middle of ingesting events and restarted; every acknowledged event must be stored once.
And `recstack report-experiment` against the same database."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from typer.testing import CliRunner

from recstack import cli
from recstack.cli import CliError
from recstack.data import Interactions
from recstack.errors import ConfigError
from recstack.models import ItemKNN
from serving_support import free_port, pair_log

BATCH = 100


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("served")
    return ItemKNN(neighbors=10).fit(Interactions.from_frame(pair_log())).save(base / "knn")


class Server:
    """`python -m recstack serve` in a subprocess, ready once /health answers."""

    def __init__(self, model_dir: Path, db: str, cwd: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (cwd / f"server-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recstack", "serve", "--model", str(model_dir),
             "--db", db, "--port", str(self.port), *options],
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers die with it
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start within 120 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop(signal.SIGKILL)


@pytest.mark.slow  # two server starts, ~20 s
def test_kill_9_during_ingestion_loses_no_acknowledged_event(
    model_dir: Path, tmp_path: Path, servers: list[Server]
) -> None:
    db_path = tmp_path / "events.db"
    db = f"sqlite:///{db_path}"
    server = Server(model_dir, db, tmp_path)
    servers.append(server)
    acked: list[str] = []
    posted: set[str] = set()
    stop = threading.Event()

    def post_batches() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            b = 0
            while not stop.is_set():
                ids = [f"b{b}-{j}" for j in range(BATCH)]
                events = [
                    {"event_id": e, "user_id": f"u{j % 50}", "item_id": f"p{j % 20}a",
                     "type": ("impression", "click")[j % 2], "timestamp": 1e9 + b}
                    for j, e in enumerate(ids)
                ]  # fmt: skip
                posted.update(ids)
                try:
                    r = client.post("/events", json={"events": events})
                except httpx.TransportError:
                    return  # the server is gone: this batch was never acknowledged
                if r.status_code == 200:
                    acked.extend(ids)
                b += 1

    poster = threading.Thread(target=post_batches)
    poster.start()
    deadline = time.monotonic() + 60
    while len(acked) < 30 * BATCH and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(server.proc.pid, signal.SIGKILL)  # mid-ingestion: the poster is still posting
    server.proc.wait(timeout=30)
    stop.set()
    poster.join(timeout=30)
    assert len(acked) >= 30 * BATCH
    assert posted - set(acked)  # a batch was in flight when the server died

    restarted = Server(model_dir, db, tmp_path)
    servers.append(restarted)
    with sqlite3.connect(db_path) as conn:
        rows = [r[0] for r in conn.execute("SELECT event_id FROM events")]
    assert len(rows) == len(set(rows))  # none duplicated
    assert set(acked) <= set(rows)  # every acknowledged event survived
    assert set(rows) <= posted  # and nothing else appeared
    # the restarted service rebuilt the live histories from the store and dedupes retries
    health = httpx.get(f"{restarted.url}/health").json()
    assert health["live_events"] == sum(1 for e in rows if int(e.rsplit("-", 1)[1]) % 2 == 1)
    retry = [
        {"event_id": e, "user_id": "u1", "item_id": "p1a", "type": "impression", "timestamp": 1}
        for e in acked[-BATCH:]
    ]
    r = httpx.post(f"{restarted.url}/events", json={"events": retry})
    assert r.json() == {"received": BATCH, "stored": 0, "duplicates": BATCH}

    # the CLI report reads the same store (the server still holds it: WAL allows readers)
    rid = httpx.get(f"{restarted.url}/recommend/u1").json()["request_id"]
    httpx.post(
        f"{restarted.url}/events",
        json={
            "events": [
                {"event_id": f"r{j}", "user_id": "u1", "item_id": "p1a", "type": kind,
                 "timestamp": 1, "request_id": rid}
                for j, kind in enumerate(["impression"] * 4 + ["click"])
            ]
        },
    )  # fmt: skip
    via_http = httpx.get(f"{restarted.url}/experiments/report").json()
    out = CliRunner().invoke(cli.app, ["report-experiment", "--db", db, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == via_http
    assert via_http["variants"][0]["impressions"] == 4 and via_http["variants"][0]["ctr"] == 0.25
    table = CliRunner().invoke(cli.app, ["report-experiment", "--db", db])
    assert table.exit_code == 0 and "0.2500 [" in table.stdout


@pytest.mark.slow  # one server start with two workers, ~10 s
def test_two_workers_share_events_and_metrics(
    model_dir: Path, tmp_path: Path, servers: list[Server]
) -> None:
    """`--workers 2`: an event one worker stores reaches the other's live histories (they
    read the shared store every second), and /metrics sums both workers."""
    server = Server(model_dir, f"sqlite:///{tmp_path / 'events.db'}", tmp_path, "--workers", "2")
    servers.append(server)

    def top(user: str) -> list[str]:  # a new connection each time: either worker answers
        r = httpx.get(f"{server.url}/recommend/{user}", params={"k": 3}, timeout=10)
        assert r.status_code == 200, r.text
        return [x["item"] for x in r.json()["items"]]

    first = top("u1")[0]
    assert all(top("u1")[0] == first for _ in range(10))
    event = {"event_id": "e1", "user_id": "u1", "item_id": first, "type": "click", "timestamp": 2e9}
    assert httpx.post(f"{server.url}/events", json={"events": [event]}).status_code == 200
    time.sleep(2.5)  # both workers have synced from the store
    assert not any(first in top("u1") for _ in range(20))  # seen now, by every worker
    metrics = httpx.get(f"{server.url}/metrics").text
    counts = re.findall(
        r'^recstack_http_requests_total\{endpoint="/recommend/\{user_id\}",method="GET",'
        r'status="200"\} ([\d.]+)$',
        metrics,
        re.M,
    )
    assert counts and float(counts[0]) == 1 + 10 + 20


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["--model", "{tmp}"], CliError, "is not a saved model directory"),
        (
            ["--variant", "a={model}", "--variant", "b={model}", "--traffic", "a=70"],
            ConfigError,
            "no share for b",
        ),
        (["--variant", "a={model}", "--variant", "a={model}"], CliError, "given twice"),
        (["--model", "{model}", "--db", "mysql://u:pw@h/d"], ConfigError, "u:\\*\\*\\*@h"),
        (["--model", "{model}", "--workers", "0"], CliError, "--workers must be a positive"),
        ([], CliError, "give --model DIR or at least one --variant"),
    ],
)
def test_serve_rejects_bad_options(
    model_dir: Path, tmp_path: Path, args: list[str], error: type[Exception], message: str
) -> None:
    filled = [a.format(model=model_dir, tmp=tmp_path) for a in args]
    res = CliRunner().invoke(cli.app, ["serve", *filled])
    assert isinstance(res.exception, error)
    assert re.search(message, str(res.exception)), str(res.exception)
