"""Load test of ``recstack serve`` with wrk (Debian's ``wrk``), on this machine.

For each model: train it on ML-100K (or build the 1M-item catalog), save it, start
``recstack serve`` as its own process, warm it up, then run wrk for ``--seconds`` against
``GET /recommend/{user}?k=10`` with a random known user per request (a Lua script), and
print throughput, latency percentiles and errors. A second run posts event batches to
``POST /events`` and reports events per second.

Models: ``ease`` and ``sasrec`` (a few epochs: quality does not change the cost of a
request) on ML-100K, and ``als-1m``: ALS on a synthetic shop of 1M items (served through
the faiss IVF index, ``--ann-from``).

Run: ``python benchmarks/bench_serve.py [--models ease,sasrec,als-1m] [--seconds 60]
[--connections 16] [--workers 1] [--max-batch 1,64] [--skip-events]``. wrk and the server
share the 2 cores. Several ``--max-batch`` values serve the same saved model in turn, so
micro-batching's effect is a ratio within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _protocol import ML100K, machine
from recstack.data import Interactions, load_dataset, make_shop
from recstack.models import create_model

LUA_RECOMMEND = """
local users = {%s}
request = function()
  local u = users[math.random(#users)]
  return wrk.format("GET", "/recommend/" .. u .. "?k=10")
end
"""

LUA_EVENTS = """
local n = 0
request = function()
  n = n + 1
  local parts = {}
  for i = 1, %d do
    local id = string.format("%%s-%%d-%%d", "%s", n, i)
    parts[i] = string.format(
      '{"event_id":"%%s","user_id":"u%%d","item_id":"%s","type":"click","timestamp":%%d}',
      id, i, n)
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/events", {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(name: str, out: Path) -> tuple[Path, list[str], str]:
    """A saved model, some of its users, and one item ID."""
    if name == "als-1m":
        data = make_shop(n_users=200_000, n_items=1_000_000, n_events=2_000_000, seed=0)
        model = create_model("als", factors=64, iterations=5)
    else:
        data = load_dataset(ML100K)
        assert isinstance(data, Interactions)
        params = {"epochs": 5, "verbose": False} if name == "sasrec" else {}
        model = create_model(name, **params)
    t0 = time.perf_counter()
    model.fit(data)
    print(f"  {name}: trained in {time.perf_counter() - t0:.0f} s ({data})", flush=True)
    path = model.save(out / name)
    return path, data.users.ids[:2000].tolist(), str(data.items.ids[0])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 900) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not start")


def wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    out = subprocess.run([*cmd, "-s", str(script), url], capture_output=True, text=True).stdout
    res: dict[str, float] = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
            res[f"p{pct} ms"] = float(m.group(1)) * scale
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["req/s"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = float(m.group(1)) if m else float("nan")
    errors = 0
    for pat in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?timeout (\d+)"):
        m = re.search(pat, out)
        errors += int(m.group(1)) if m else 0
    m = re.search(r"connect (\d+), read (\d+), write (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    res["errors"] = errors
    return res


def serve(
    path: Path, workers: int, db: str, ann_from: int, max_batch: int
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "recstack", "serve", "--model", str(path), "--db", db]
    cmd += ["--port", str(port), "--workers", str(workers), "--ann-from", str(ann_from)]
    cmd += ["--max-batch", str(max_batch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="ease,sasrec,als-1m")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=500, help="events per POST /events")
    ap.add_argument(
        "--max-batch",
        default="64",
        help="serve --max-batch values to compare, e.g. 1,64 (1: no micro-batching)",
    )
    ap.add_argument("--skip-events", action="store_true", help="only GET /recommend")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one request at a time per process
    print(machine(), f"| wrk, {args.connections} connections, {args.seconds} s, "
          f"{args.workers} worker(s)")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path, users, item = train(name, Path(tmp))
            for max_batch in (int(b) for b in args.max_batch.split(",")):
                label = f"{name} max-batch {max_batch}"
                db = f"sqlite:///{tmp}/{name}-{max_batch}-events.db"
                proc, url = serve(path, args.workers, db, 100_000, max_batch)
                try:
                    script = Path(tmp) / "rec.lua"
                    script.write_text(LUA_RECOMMEND % ",".join(json.dumps(u) for u in users))
                    wrk(url, script, 5, args.connections)  # warm-up
                    res = wrk(url, script, args.seconds, args.connections)
                    rows.append((f"{label} GET /recommend k=10", res))
                    print(f"  {rows[-1]}", flush=True)
                    if not args.skip_events:
                        ev = Path(tmp) / "events.lua"
                        ev.write_text(LUA_EVENTS % (args.batch, name, item))
                        res = wrk(url, ev, min(args.seconds, 20), 4)
                        res["events/s"] = res["req/s"] * args.batch
                        rows.append((f"{label} POST /events x{args.batch}", res))
                        print(f"  {rows[-1]}", flush=True)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    print("\n| run | req/s | p50 ms | p90 ms | p99 ms | errors | events/s |")
    print("|---|---|---|---|---|---|---|")
    for label, r in rows:
        ev = f"{r['events/s']:.0f}" if "events/s" in r else ""
        print(
            f"| {label} | {r['req/s']:.0f} | {r.get('p50 ms', float('nan')):.2f} | "
            f"{r.get('p90 ms', float('nan')):.2f} | {r.get('p99 ms', float('nan')):.2f} | "
            f"{r['errors']:.0f} | {ev} |"
        )


if __name__ == "__main__":
    main()
