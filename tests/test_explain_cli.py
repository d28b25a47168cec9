"""`recstack recommend --explain` and `recstack explain`: the JSON shape, the round trip
between the two commands, titles in the sentences, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conformance import planted_data

CLI = [sys.executable, "-m", "recstack.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def check_shape(payload: list[dict], history: set[str], k: int) -> None:
    assert [r["rank"] for r in payload] == list(range(1, k + 1))
    for rec in payload:
        assert set(rec) == {"item", "rank", "score", "explanation"}
        why = rec["explanation"]
        assert set(why) == {"text", "items"} and why["text"].startswith("Because you watched")
        assert why["items"] and all(set(x) == {"item", "share"} for x in why["items"])
        assert {x["item"] for x in why["items"]} <= history
        shares = [x["share"] for x in why["items"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-6


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ItemKNN trained by the CLI on the planted data (no titles: IDs in sentences)."""
    work = tmp_path_factory.mktemp("explain_cli")
    planted_data().to_frame().to_csv(work / "log.csv", index=False)
    res = run("train", "log.csv", "--model", "itemknn", "--out", "m", cwd=work)
    assert res.returncode == 0, res.stderr
    return work


def test_recommend_explain_json_and_explain_round_trip(synthetic_model: Path) -> None:
    work = synthetic_model
    res = run(
        "recommend", "--model", "m", "--history", "1000,1004,1008", "--k", "3",
        "--explain", "--json", cwd=work,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    check_shape(payload, {"1000", "1004", "1008"}, 3)
    first = payload[0]
    top = first["explanation"]["items"][0]["item"]
    assert first["explanation"]["text"].startswith(f"Because you watched {top}")
    res = run(
        "explain", "--model", "m", "--history", "1000,1004,1008", "--item", first["item"],
        "--k-items", "3", "--json", cwd=work,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    alone = json.loads(res.stdout)
    assert alone == {**first, "rank": 1}
    # without --explain the JSON keeps its former shape
    res = run("recommend", "--model", "m", "--history", "1000", "--k", "2", "--json", cwd=work)
    assert [set(r) for r in json.loads(res.stdout)] == [{"item", "rank", "score"}] * 2


def test_explain_bad_input_is_one_line_and_exit_2(synthetic_model: Path) -> None:
    for args, message in [
        (["--history", "1000", "--item", "nope"], "nope"),
        (["--history", "1000", "--item", "1001", "--method", "attention"], "method='attention'"),
    ]:
        res = run("explain", "--model", "m", *args, cwd=synthetic_model)
        assert res.returncode == 2, res.stdout
        assert message in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_ml100k_sentences_use_titles(ml100k_dir: Path, tmp_path: Path) -> None:
    res = run("train", str(ml100k_dir), "--model", "ease", "--out", "m", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    raw = pd.read_csv(ml100k_dir / "ml-100k.inter", sep="\t", dtype=str)
    history = set(raw.loc[raw.iloc[:, 0] == "196", raw.columns[1]])
    items = pd.read_csv(ml100k_dir / "ml-100k.item", sep="\t", dtype=str)
    titles = dict(zip(items.iloc[:, 0], items.iloc[:, 1], strict=True))
    res = run("recommend", "--model", "m", "--user", "196", "--k", "5", "--explain", "--json",
              cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    check_shape(payload, history, 5)
    for rec in payload:
        named = [titles[x["item"]] for x in rec["explanation"]["items"][:3]]
        # catalog-style titles are read naturally: "Princess Bride, The" -> "The Princess Bride"
        named = [re.sub(r"^(.+), (The|A|An)$", r"\2 \1", t) for t in named]
        assert all(n in rec["explanation"]["text"] for n in named), (named, rec)
    # a history item has no rank; the table names the item and lists the shares
    seen = sorted(history)[0]
    res = run("explain", "--model", "m", "--user", "196", "--item", seen, "--json", cwd=tmp_path)
    assert json.loads(res.stdout)["rank"] is None
    res = run("explain", "--model", "m", "--user", "196", "--item", payload[0]["item"],
              cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "(rank 1, score" in res.stdout and "Because you watched" in res.stdout
    assert np.isclose(
        float(res.stdout.split("score ")[1].split(")")[0]), payload[0]["score"], rtol=1e-3
    )
