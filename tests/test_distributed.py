"""Training past one process: ``torchrun`` with 2 CPU processes (gloo) gives every process
the same weights and reaches the quality of one process on the planted next-item rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conformance import cycle_data
from recstack.models.neural.sasrec import SASRec
from test_sasrec import successor_hit_rate

# successor_hit_rate ranks seen items too: train them as negatives (exclude_seen=False)
PARAMS = {
    "dim": 32,
    "heads": 2,
    "layers": 1,
    "max_len": 20,
    "epochs": 40,
    "exclude_seen": False,
    "verbose": False,
}

WORKER = """
import hashlib, json, os, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from conformance import cycle_data
from test_sasrec import successor_hit_rate
from recstack.models.neural.sasrec import SASRec
data, succ = cycle_data()
model = SASRec(device="cpu", **{params!r}).fit(data)
weights = b"".join(v.numpy().tobytes() for v in model._net.state_dict().values())
out = {{
    "rank": torch.distributed.get_rank(),
    "world": torch.distributed.get_world_size(),
    "sha": hashlib.sha256(weights).hexdigest(),
    "hit_rate": successor_hit_rate(model, succ),
}}
with open(os.path.join({out!r}, f"rank{{out['rank']}}.json"), "w") as f:
    json.dump(out, f)
torch.distributed.destroy_process_group()
"""


def test_two_cpu_processes_match_one(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    tests = str(Path(__file__).resolve().parent)
    script.write_text(WORKER.format(tests=tests, params=PARAMS, out=str(tmp_path)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*cmd, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["sha"] == ranks[1]["sha"]  # DDP kept the replicas identical
    data, succ = cycle_data()
    single = successor_hit_rate(SASRec(device="cpu", **PARAMS).fit(data), succ)
    assert ranks[0]["hit_rate"] >= 0.95
    assert ranks[0]["hit_rate"] >= single - 0.05, (ranks[0]["hit_rate"], single)
