"""Sequential models on the shared ML-100K protocol, beside RecBole's measured rows.

Each model trains on the train split with early stopping on validation NDCG@10 (the same
validation the peers' scripts use: the next item after train, train items excluded), then is
tested from the train + valid history (the sequential peers' protocol), once per seed
(``--seeds``). Time to quality: the wall time at which recstack's validation NDCG@10 first
reaches RecBole's best validation NDCG@10 (same evaluator), against the time RecBole needed
to reach it. That time is only comparable on one machine, so ``--recbole-run DIR`` takes it
from a RecBole run on this machine, made with the peers' own script just before::

    python -m venv rb && rb/bin/pip install "torch>=2.3,<2.14" "pandas<3" recbole==1.2.1
    # patch RecBole as ../shared/peers/recbole-*.diff shows (numpy 2, torch >= 2.6), then
    PEERS_WORK=DIR rb/bin/python ../../shared/peers/scripts/make_split.py
    PEERS_WORK=DIR rb/bin/python ../../shared/peers/scripts/run_recbole.py SASRec 100000 \
        train_batch_size=256 epochs=27 variant=here
    python bench_sequential.py --recbole-run DIR

(its seeded curve is the recorded one, best at epoch 27, so 27 epochs reach it). Without
it, the recorded ~2,750 s (27 epochs x ~102 s, ../shared/peers/results.json) from another
machine of this kind is the reference: a rough one, since the two libraries' speeds differ
from machine to machine by different factors.

``--synthetic``: a synthetic shop with planted successor transitions (each event is, with
probability 0.7, the fixed successor of the previous item), leave-last-out: the sequential
models against EASE and ALS, which cannot see order.

``--scoring``: only the full-catalog top-10 time of every model (fitted for one epoch: the
time does not depend on the weights), eager and traced, beside RecBole's GRU4Rec and SASRec
scoring paths restated layer for layer (their `full_sort_predict`, history mask and top-k)
and run in the same process, since RecBole's recorded times come from other runs.

``--scale``: one epoch of SASRec (sampled softmax) on a synthetic set of 1M users and 100k
items; prints the epoch time and the peak RSS.

Run: ``cd benchmarks && python bench_sequential.py [--models sasrec,gru4rec] [--param k=v]
[--seeds 0,1,2] [--recbole-run DIR] [--synthetic] [--scoring] [--scale]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from _protocol import PEER_DIR, machine, peer_split
from recstack.data import Histories, leave_last_out, make_shop
from recstack.data.splits import Split
from recstack.evaluation import evaluate
from recstack.models import create_model
from recstack.models.base import Recommender


def _timed(model: Recommender, hist: Histories) -> float:
    """Seconds for the top-10 of every history, seen items excluded."""
    t0 = time.perf_counter()
    model.recommend(histories=hist, k=10)
    return time.perf_counter() - t0


def recbole_rows() -> dict[str, dict]:
    """RecBole's rows of the peers' results, by lowercase model name (the converged SASRec)."""
    rows = json.loads((PEER_DIR / "results.json").read_text())
    out: dict[str, dict] = {}
    for r in rows:
        if r["library"].startswith("RecBole") and r["model"] in ("SASRec", "GRU4Rec", "BERT4Rec"):
            if r["model"] == "SASRec" and r.get("variant") != "long":
                continue
            out[r["model"].lower()] = r
    return out


def time_to_best(row: dict) -> tuple[float, int]:
    """(seconds, epoch) at which a RecBole run reached its best validation: its fit time
    (training and validation) up to the first epoch of its best validation value."""
    curve = row["valid_curve_ndcg10"]
    best = int(np.argmax(curve)) + 1
    return row["fit_time_s"] * best / len(curve), best


def recbole_here(run_dir: Path, recorded: dict) -> dict:
    """The latest row of ``recorded``'s model in a ``run_recbole.py`` output directory,
    checked against the recorded run: with the same seed its validation curve must be the
    recorded one."""
    rows = [
        r
        for r in json.loads((run_dir / "results.json").read_text())
        if r["model"] == recorded["model"] and r["library"].startswith("RecBole")
    ]
    if not rows:
        raise SystemExit(f"{run_dir}/results.json has no RecBole {recorded['model']} row")
    row = rows[-1]
    here, then = row["valid_curve_ndcg10"], recorded["valid_curve_ndcg10"]
    if here != then[: len(here)]:
        raise SystemExit(
            f"RecBole's validation curve in {run_dir} is not the recorded one: {here} "
            f"against {then[: len(here)]} (another seed or setting?)"
        )
    return row


class RecBoleGRU4Rec(nn.Module):
    """RecBole 1.2.1's GRU4Rec scoring network at the peers' settings (embedding 64, hidden
    64, one bias-free GRU layer, dense layer), restated so it runs beside ours."""

    def __init__(self, n_items: int, dim: int = 64) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.emb_dropout = nn.Dropout(0.3)
        self.gru_layers = nn.GRU(dim, dim, num_layers=1, bias=False, batch_first=True)
        self.dense = nn.Linear(dim, dim)

    def full_sort_predict(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru_layers(self.emb_dropout(self.item_embedding(seq)))
        out = self.dense(out)
        return _gather_last(out, seq_len) @ self.item_embedding.weight.T  # (B, n_items + 1)


class RecBoleSASRec(nn.Module):
    """RecBole 1.2.1's SASRec scoring network at the peers' settings (64-d, 2 post-LN layers,
    2 heads, inner 256, GELU, LayerNorm eps 1e-12, positions from the left of right-padded
    sequences, an additive -10000 mask, every position computed), restated."""

    def __init__(self, n_items: int, dim: int = 64, layers: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(50, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    "query": nn.Linear(dim, dim),
                    "key": nn.Linear(dim, dim),
                    "value": nn.Linear(dim, dim),
                    "dense": nn.Linear(dim, dim),
                    "norm1": nn.LayerNorm(dim, eps=1e-12),
                    "inner": nn.Linear(dim, 256),
                    "outer": nn.Linear(256, dim),
                    "norm2": nn.LayerNorm(dim, eps=1e-12),
                }
            )
            for _ in range(layers)
        )

    def full_sort_predict(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        batch, length = seq.shape
        x = self.item_embedding(seq) + self.position_embedding(torch.arange(length))[None]
        x = self.norm(x)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        allowed = (seq != 0)[:, None, None, :] & causal
        mask = torch.where(allowed, 0.0, -10000.0)  # (B, 1, L, L)
        d = x.shape[-1] // self.heads
        for lay in self.layers:
            q, k, v = (
                lay[n](x).view(batch, length, self.heads, d).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            probs = (q @ k.transpose(-1, -2) / d**0.5 + mask).softmax(-1)
            ctx = (probs @ v).transpose(1, 2).reshape(batch, length, -1)
            x = lay["norm1"](lay["dense"](ctx) + x)
            x = lay["norm2"](lay["outer"](F.gelu(lay["inner"](x))) + x)
        return _gather_last(x, seq_len) @ self.item_embedding.weight.T


def _gather_last(out: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    """RecBole's ``gather_indexes``: each row's output at its last real position, (B, D)."""
    index = (seq_len - 1).view(-1, 1, 1).expand(-1, -1, out.shape[-1])
    return out.gather(1, index).squeeze(1)


RECBOLE_NETS: dict[str, type[nn.Module]] = {"gru4rec": RecBoleGRU4Rec, "sasrec": RecBoleSASRec}


@torch.no_grad()
def recbole_seconds(name: str, hist: Histories) -> float:
    """RecBole's rec_time_s path for ``name``: right-padded last-50 sequences, full-sort
    scores, padding and history masked, top-10 (best of 3)."""
    net = RECBOLE_NETS[name](hist.n_items).eval()
    take = np.minimum(hist.lengths, 50)
    seq = np.zeros((len(hist), 50), dtype=np.int64)
    for r in range(len(hist)):  # setup, not timed
        end = hist.indptr[r + 1]
        seq[r, : take[r]] = hist.items[end - take[r] : end] + 1
    seq_t, len_t = torch.from_numpy(seq), torch.from_numpy(take.astype(np.int64))
    seen = hist.to_csr().tocoo()
    rows, cols = torch.from_numpy(seen.row).long(), torch.from_numpy(seen.col).long() + 1
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        sc = net.full_sort_predict(seq_t, len_t)
        sc[:, 0] = -np.inf
        sc[rows, cols] = -np.inf
        torch.topk(sc, 10, dim=-1)
        best = min(best, time.perf_counter() - t0)
    return best


def scoring(models: list[str], params: dict) -> None:
    split = peer_split()
    hist = split.test_history().histories()
    print(f"\n## full-catalog top-10 for {len(hist)} users, best of 3 (s)")
    print("| model | eager | traced | RecBole's path, restated |")
    print("|---|---|---|---|")
    for name in models:
        model = create_model(name, **{"epochs": 1, "verbose": False, **params})
        model.fit(split.train)
        _timed(model, hist)  # warm-up
        eager = min(_timed(model, hist) for _ in range(3))
        model.optimize_inference()
        _timed(model, hist)
        traced = min(_timed(model, hist) for _ in range(3))
        peer = f"{recbole_seconds(name, hist):.3f}" if name in RECBOLE_NETS else ""
        print(f"| {name} {params or ''} | {eager:.3f} | {traced:.3f} | {peer} |", flush=True)


def synthetic(models: list[str], params: dict) -> None:
    data = make_shop(n_users=3000, n_items=1000, n_events=90_000, seq_strength=0.7, seed=0)
    split = leave_last_out(data)
    print(f"\n## planted transitions: make_shop 3000 x 1000, {data.n_events:,} events")
    print("| model | fit s | HR@10 | NDCG@10 |")
    print("|---|---|---|---|")
    for name in [*models, "ease", "als"]:
        model = create_model(name, **(params if name in models else {}))
        t0 = time.perf_counter()
        model.fit(split.train, split.valid)
        fit_s = time.perf_counter() - t0
        m = evaluate(model, split, progress=False).metrics
        print(f"| {name} | {fit_s:.0f} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} |", flush=True)


def scale(params: dict) -> None:
    t0 = time.perf_counter()
    data = make_shop(n_users=1_000_000, n_items=100_000, n_events=10_000_000, seed=0)
    print(f"\n## scale: {data.n_users:,} users x {data.n_items:,} items, {data.n_events:,} events")
    print(f"data built in {time.perf_counter() - t0:.0f} s")
    model = create_model(
        "sasrec", **{"loss": "sampled", "epochs": 1, "max_len": 50, "batch_size": 512, **params}
    )
    t0 = time.perf_counter()
    model.fit(data)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"one epoch ({model.get_params()}): {time.perf_counter() - t0:.0f} s; peak RSS {rss:.1f} GB"
    )


def ml100k(
    name: str, params: dict, split: Split, peer: dict | None, anchor: tuple[float, str] | None
) -> None:
    """Fit ``name`` on ``split`` (the peers'), print its curve, test metrics, scoring time and
    time to RecBole's best validation (``anchor``: RecBole's seconds to it, and where they
    were measured)."""
    model = create_model(name, **params)
    t0 = time.perf_counter()
    model.fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    test = evaluate(model, split, progress=False).metrics
    # RecBole's rec_time_s: top-10 of every user from the train + valid history, seen
    # items excluded (full-sort scores, history mask, top-k); best of 3
    hist = split.test_history().histories()
    score_s = min(_timed(model, hist) for _ in range(3))
    model.optimize_inference()  # the traced network, as the service scores
    _timed(model, hist)  # the first traced call builds the graph
    traced_s = min(_timed(model, hist) for _ in range(3))
    print(f"\n## {name} {model.get_params()}")
    print("| epoch | loss | valid NDCG@10 | s |")
    print("|---|---|---|---|")
    for e, loss, v, sec in model.training_log_:
        print(f"| {e} | {loss:.4f} | {v:.4f} | {sec:.0f} |")
    print(
        f"best epoch {model.best_epoch_} (valid {model.best_valid_ndcg_:.4f}); fit "
        f"{fit_s:.0f} s; top-10 for all {len(hist)} users {score_s:.3f} s "
        f"({traced_s:.3f} s traced)" + (f" (RecBole {peer['rec_time_s']:.3f} s)" if peer else "")
    )
    print(
        f"test: HR@10 {test['hr@10']:.4f} NDCG@10 {test['ndcg@10']:.4f} HR@20 "
        f"{test['hr@20']:.4f} NDCG@20 {test['ndcg@20']:.4f} MRR@10 {test['mrr@10']:.4f}"
    )
    if peer and anchor:
        target = peer["valid_NDCG10"]
        reach = next((sec for _, _, v, sec in model.training_log_ if v >= target), None)
        print(
            f"RecBole {peer['model']}: test NDCG@10 {peer['NDCG@10']:.4f} (ratio "
            f"{test['ndcg@10'] / peer['NDCG@10']:.3f}), best valid {target:.4f} after "
            f"{anchor[0]:.0f} s ({anchor[1]}); recstack reached it after "
            + (
                f"{reach:.0f} s (RecBole's time / recstack's: {anchor[0] / reach:.1f})"
                if reach is not None
                else "— (never)"
            ),
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="sasrec")
    ap.add_argument("--param", action="append", default=[], help="model parameter k=v (JSON)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds, one fit each")
    ap.add_argument(
        "--recbole-run",
        type=Path,
        default=None,
        help="a PEERS_WORK directory of run_recbole.py on this machine (see the docstring)",
    )
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--scoring", action="store_true")
    ap.add_argument("--no-ml100k", action="store_true")
    args = ap.parse_args()
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    print(machine(), f"| torch {torch.__version__} | torch threads {torch.get_num_threads()}")
    if args.synthetic:
        synthetic(args.models.split(","), params)
    if args.scoring:
        scoring(args.models.split(","), params)
    if args.scale:
        scale(params)
    if args.no_ml100k:
        return
    split = peer_split()
    peers = recbole_rows()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [params.get("seed", 0)]
    for name in args.models.split(","):
        peer = peers.get(name.replace("-", ""))
        anchor = None
        if peer:
            seconds, epoch = time_to_best(peer)
            anchor = (seconds, f"epoch {epoch}, recorded on another machine")
            if args.recbole_run is not None:
                peer = recbole_here(args.recbole_run, peer)
                seconds, epoch = time_to_best(peer)
                anchor = (
                    seconds,
                    f"epoch {epoch}, this machine, {peer['sec_per_epoch']:.0f} s/epoch",
                )
        for seed in seeds:
            ml100k(name, {**params, "seed": seed}, split, peer, anchor)


if __name__ == "__main__":
    main()
