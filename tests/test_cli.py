"""The command line: the issue's acceptance run, every command once, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytrec_eval

from recstack.cli import parse_params

CLI = [sys.executable, "-m", "recstack.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def evaluated(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`recstack evaluate ml-100k --model popularity --json p.json --recs r.csv`, once."""
    work = tmp_path_factory.mktemp("cli")
    res = run(
        "evaluate",
        str(ml100k_dir),
        "--model",
        "popularity",
        "--json",
        "p.json",
        "--recs",
        "r.csv",
        cwd=work,
    )
    assert res.returncode == 0, res.stderr
    return work


def test_evaluate_metrics_match_an_independent_evaluator(evaluated: Path, ml100k_dir: Path) -> None:
    """The metrics in p.json equal trec_eval's on r.csv and the leave-last-out test items."""
    report = json.loads((evaluated / "p.json").read_text())
    assert set(report) == {
        "model",
        "params",
        "metrics",
        "fit_seconds",
        "eval_seconds",
        "n_users",
        "n_items",
    }
    assert report["n_users"] == 943 and report["n_items"] == 1682
    recs = pd.read_csv(evaluated / "r.csv", dtype={"user": str, "item": str})
    assert list(recs.columns) == ["user", "item", "rank", "score"]
    assert recs.groupby("user").size().eq(20).all()

    # the test item of each user, by the protocol's own definition, from the raw file
    raw = pd.read_csv(ml100k_dir / "ml-100k.inter", sep="\t", dtype=str)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    raw["order"] = np.arange(len(raw))
    raw["t"] = raw["timestamp"].astype(float)
    last = raw.sort_values(["user_id", "t", "order"]).groupby("user_id").tail(1)
    qrel = {u: {i: 1} for u, i in zip(last["user_id"], last["item_id"], strict=True)}
    # trec_eval ranks by score; ranks (not scores) define our lists, so score = -rank
    run_ = {
        u: dict(zip(g["item"], -g["rank"].astype(float), strict=True))
        for u, g in recs.groupby("user")
    }
    for k in (10, 20):
        cut = {u: {i: s for i, s in d.items() if -s <= k} for u, d in run_.items()}
        ev = pytrec_eval.RelevanceEvaluator(qrel, {f"ndcg_cut.{k}", "recip_rank", "P", "recall"})
        per = ev.evaluate(cut)
        mean = {m: np.mean([v[m] for v in per.values()]) for m in next(iter(per.values()))}
        got = report["metrics"]
        assert got[f"ndcg@{k}"] == pytest.approx(mean[f"ndcg_cut_{k}"], abs=1e-9)
        assert got[f"mrr@{k}"] == pytest.approx(mean["recip_rank"], abs=1e-9)
        assert got[f"precision@{k}"] == pytest.approx(mean[f"P_{k}"], abs=1e-9)
        assert got[f"recall@{k}"] == pytest.approx(mean[f"recall_{k}"], abs=1e-9)
        hits = [bool(set(d) & set(qrel[u])) for u, d in cut.items()]
        assert got[f"hr@{k}"] == pytest.approx(np.mean(hits), abs=1e-12)
    # peers' numpy Pop (expected under random tie-breaking) is .0441; ties make it differ a bit
    assert report["metrics"]["ndcg@10"] == pytest.approx(0.0441, abs=0.002)


def test_split_train_recommend_round_trip(ml100k_dir: Path, tmp_path: Path) -> None:
    res = run("split", str(ml100k_dir), "--out", "s", "--method", "loo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert {"train.inter", "valid.inter", "test.inter", "split.json"} <= {
        p.name for p in (tmp_path / "s").iterdir()
    }
    res = run(
        "evaluate", "s", "--model", "popularity", "--k", "5", "--json", "e.json", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "ndcg@5" in json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert run("train", "s", "--model", "popularity", "--out", "m", cwd=tmp_path).returncode == 0
    res = run("recommend", "--model", "m", "--user", "196", "--k", "3", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    top = json.loads(res.stdout)
    assert [r["rank"] for r in top] == [1, 2, 3]
    res = run(
        "recommend", "--model", "m", "--history", "50,181", "--k", "2", "--json", cwd=tmp_path
    )
    new_user = json.loads(res.stdout)
    assert {r["item"] for r in new_user}.isdisjoint({"50", "181"})


def test_compare_writes_report_and_tune_feeds_evaluate(ml100k_dir: Path, tmp_path: Path) -> None:
    res = run(
        "compare", str(ml100k_dir), "--models", "random,popularity", "--report", "rep", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "popularity" in page
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["best"] == "popularity"
    res = run(
        "tune",
        str(ml100k_dir),
        "--model",
        "popularity",
        "--trials",
        "2",
        "--origins",
        "2",
        "--out",
        "best.json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "mean of 2 origins" in " ".join(res.stdout.split())  # the title may wrap
    assert json.loads((tmp_path / "best.json").read_text())["origins"] == 2
    res = run(
        "evaluate",
        str(ml100k_dir),
        "--model",
        "popularity",
        "--params-file",
        "best.json",
        "--json",
        "t.json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    best = json.loads((tmp_path / "best.json").read_text())["params"]
    assert json.loads((tmp_path / "t.json").read_text())["params"] == best


def test_models_and_data_info(ml100k_dir: Path, tmp_path: Path) -> None:
    res = run("models", "--json", cwd=tmp_path)
    assert {"popularity", "random"} <= set(json.loads(res.stdout))
    res = run("data", "info", str(ml100k_dir), "--json", "info.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "info.json").read_text())["all"]
    assert info["events"] == 100_000 and info["users"] == 943


def test_quickstart_offline_uses_synthetic_data(tmp_path: Path) -> None:
    """No network here: one notice line, then the whole job on the synthetic shop."""
    env = {"RECSTACK_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [*CLI, "quickstart", "--report", "qs", "--models", "random,popularity,itemknn,ease,als"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "synthetic" in res.stderr
    assert (tmp_path / "qs" / "report.html").is_file()
    assert "recent history" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "{data}", "--model", "popularty"], "did you mean 'popularity'"),
        (["evaluate", "{data}", "--model", "popularity", "-p", "half_life=3"], "half_life_days"),
        (
            ["evaluate", "{data}", "--model", "popularity", "-p", "half_life_days=-1"],
            "half_life_days must be",
        ),
        (["evaluate", "{data}", "--model", "popularity", "--k", "0"], "positive integers"),
        (["evaluate", "/no/such/file.csv", "--model", "popularity"], "/no/such/file.csv"),
        (["recommend", "--model", "/no/such/dir", "--user", "1"], "not a saved model"),
        (
            ["recommend", "--model", "/no/such/dir", "--user", "1", "--history", "2"],
            "exactly one of",
        ),
        (["tune", "{data}", "--model", "popularity", "--trials", "0"], "--trials"),
        (
            ["tune", "{data}", "--model", "popularity", "--origins", "0"],
            "origins must be a positive integer",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, ml100k_dir: Path, tmp_path: Path
) -> None:
    res = run(*(a.replace("{data}", str(ml100k_dir)) for a in args), cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_parse_params_types() -> None:
    assert parse_params(["a=1", "b=0.5", "c=true", "d=None", "e=bm25", "f=[1, 2]"]) == {
        "a": 1,
        "b": 0.5,
        "c": True,
        "d": None,
        "e": "bm25",
        "f": [1, 2],
    }
