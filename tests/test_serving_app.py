"""The HTTP service through FastAPI's TestClient: wire formats, validation, live updates,
the popularity fallback, idempotent events, the A/B report, hot reload and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from recstack.data import Interactions
from recstack.errors import ConfigError
from recstack.models import EASE, ItemKNN, Popularity
from recstack.models.base import Recommender
from recstack.serving import ServeConfig, create_app, wilson
from recstack.serving.experiment import Experiment
from serving_support import pair_log, postgres_cluster, reset_postgres

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return pair_log()


@pytest.fixture(scope="module")
def model_dirs(log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ItemKNN, EASE and popularity fitted on the planted-pair data, saved."""
    base = tmp_path_factory.mktemp("models")
    data = Interactions.from_frame(log)
    models = {"knn": ItemKNN(neighbors=10), "ease": EASE(l2=10.0), "pop": Popularity()}
    return {name: m.fit(data).save(base / name) for name, m in models.items()}


def make_client(tmp_path: Path, variants: dict[str, Path], **options: Any) -> TestClient:
    config = ServeConfig(
        variants={k: str(v) for k, v in variants.items()},
        db=options.pop("db", f"sqlite:///{tmp_path / 'events.db'}"),
        admin_token=options.pop("admin_token", TOKEN),
        **options,
    )
    return TestClient(create_app(config))


@pytest.fixture
def client(tmp_path: Path, model_dirs: dict[str, Path]) -> Iterator[TestClient]:
    with make_client(tmp_path, {"default": model_dirs["knn"]}) as c:
        yield c


def user_items(log: pd.DataFrame, user: str) -> list[str]:
    return log.loc[log["user_id"] == user, "item_id"].tolist()


def items_of(body: dict[str, Any]) -> list[str]:
    return [x["item"] for x in body["items"]]


def event(eid: str, user: str, item: str, kind: str = "click", **extra: Any) -> dict[str, Any]:
    base = {"event_id": eid, "user_id": user, "item_id": item, "type": kind, "timestamp": 1e9}
    return base | extra


# ---------------------------------------------------------------------------- recommend
def test_get_recommend_wire_format_and_scores(
    client: TestClient, model_dirs: dict[str, Path], log: pd.DataFrame
) -> None:
    r = client.get("/recommend/u5", params={"k": 7})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"request_id", "variant", "user_id", "fallback", "items"}
    assert body["variant"] == "default" and body["user_id"] == "u5" and body["fallback"] is False
    assert len(body["request_id"]) == 32
    assert [x["rank"] for x in body["items"]] == list(range(1, 8))
    assert all(set(x) == {"item", "rank", "score"} for x in body["items"])
    # the model's own top 7 for the stored history, seen items excluded
    model = Recommender.load(model_dirs["knn"])
    ref = model.recommend(["u5"], k=7)
    assert items_of(body) == ref.item_ids[0].tolist()
    assert [x["score"] for x in body["items"]] == pytest.approx(ref.scores[0].tolist())
    assert not set(items_of(body)) & set(user_items(log, "u5"))
    # exclude_seen=false lets the history back in; each request gets its own ID
    again = client.get("/recommend/u5", params={"k": 7, "exclude_seen": "false"}).json()
    assert set(items_of(again)) & set(user_items(log, "u5"))
    assert again["request_id"] != body["request_id"]


def test_post_recommend_scores_the_posted_history(
    client: TestClient, model_dirs: dict[str, Path]
) -> None:
    r = client.post(
        "/recommend", json={"history": ["p3a", "p8b", "nope", 12345], "k": 5, "user_id": 77}
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"request_id", "variant", "user_id", "fallback", "items", "unknown_items"}
    assert body["user_id"] == "77"  # an integer ID is the same ID as its text
    assert body["unknown_items"] == ["nope", "12345"] and body["fallback"] is False
    model = Recommender.load(model_dirs["knn"])
    ref = model.recommend(histories=[["p3a", "p8b"]], k=5)
    assert items_of(body) == ref.item_ids[0].tolist()
    assert items_of(body)[:2] == ["p3b", "p8a"] or items_of(body)[:2] == ["p8a", "p3b"]
    # an anonymous history of unknown items only: the popularity fallback
    anon = client.post("/recommend", json={"history": ["x", "y"]}).json()
    assert anon["fallback"] is True and anon["user_id"] is None and len(anon["items"]) == 10


def test_posted_times_reach_a_model_that_reads_them(log: pd.DataFrame, tmp_path: Path) -> None:
    """A posted history's ``times`` are the events' times for SASRec's ``time_gaps`` (a
    burst scores otherwise than a week apart); they must fit the history."""
    pytest.importorskip("torch")
    from recstack.models.neural.sasrec import SASRec

    fast = {"dim": 16, "heads": 1, "layers": 1, "max_len": 6, "epochs": 2, "verbose": False}
    model = SASRec(**fast).fit(Interactions.from_frame(log))
    history = ["p3a", "p3b", "p8a"]
    burst, spread = [5.0, 5.0, 5.0], [0.0, 7 * 86400.0, 14 * 86400.0]
    refs = [model.recommend(histories=[history], times=[t], k=5) for t in (burst, spread)]
    assert not np.allclose(refs[0].scores, refs[1].scores)  # the times matter to it
    with make_client(tmp_path, {"default": model.save(tmp_path / "sasrec")}) as c:
        for times, ref in zip((burst, spread), refs, strict=True):
            body = c.post("/recommend", json={"history": [*history, "nope"], "k": 5,
                                              "times": [*times, times[-1]]}).json()  # fmt: skip
            assert items_of(body) == ref.item_ids[0].tolist()
            np.testing.assert_allclose(
                [x["score"] for x in body["items"]], ref.scores[0], rtol=1e-5
            )
        short = c.post("/recommend", json={"history": history, "times": [1.0, 2.0]})
        assert short.status_code == 422 and "times has 2 entries for 3" in short.text
        back = c.post("/recommend", json={"history": history, "times": [3.0, 2.0, 4.0]})
        assert back.status_code == 422 and "times decrease at entry 1" in back.text


def test_unknown_user_gets_popularity_in_count_order(client: TestClient, log: pd.DataFrame) -> None:
    body = client.get("/recommend/somebody-new", params={"k": 40}).json()
    assert body["fallback"] is True and body["user_id"] == "somebody-new"
    # distinct users per item, most first; ties in catalog (first appearance) order
    counts = log.groupby("item_id", sort=False)["user_id"].nunique()
    order = pd.Index(pd.unique(log["item_id"]))
    ranked = sorted(counts.index, key=lambda i: (-counts[i], order.get_loc(i)))
    assert items_of(body) == ranked
    assert [x["score"] for x in body["items"]] == [float(counts[i]) for i in ranked]
    why = client.get("/recommend/somebody-new", params={"k": 1, "explain": "true"}).json()
    top = ranked[0]
    assert why["items"][0]["explanation"] == {
        "text": f"popular with {counts[top]} users (#1 of 40 items)",
        "items": [],
    }


def test_explanations_and_rerank(client: TestClient, model_dirs: dict[str, Path]) -> None:
    body = client.get("/recommend/u5", params={"k": 3, "explain": "true"}).json()
    for x in body["items"]:
        assert set(x) == {"item", "rank", "score", "explanation"}
        assert x["explanation"]["text"].startswith("Because you watched")
        assert {"item", "share"} == set(x["explanation"]["items"][0])
    plain = client.get("/recommend/u5", params={"k": 10}).json()
    mmr = client.get("/recommend/u5", params={"k": 10, "rerank": "mmr:0.0"}).json()
    top100 = items_of(client.get("/recommend/u5", params={"k": 100}).json())
    assert mmr["fallback"] is False and len(mmr["items"]) == 10
    assert set(items_of(mmr)) <= set(top100)  # chosen among the candidates
    assert items_of(mmr) != items_of(plain)  # pure diversity reorders the planted pairs
    none = client.get("/recommend/u5", params={"k": 10, "rerank": ""}).json()
    assert items_of(none) == items_of(plain)  # `rerank=` is no re-ranker


@pytest.mark.parametrize(
    ("method", "url", "payload", "where"),
    [
        ("get", "/recommend/u1?k=0", None, "query.k"),
        ("get", "/recommend/u1?k=1001", None, "query.k"),
        ("get", "/recommend/u1?k=ten", None, "query.k"),
        ("get", "/recommend/u1?explain=maybe", None, "query.explain"),
        ("get", "/recommend/u1?rerank=bogus:1", None, "query.rerank"),
        ("get", "/recommend/u1?rerank=mmr:7", None, "query.rerank"),
        ("get", "/recommend/u1?rerank=cap:2", None, "query.rerank"),  # no genres here
        ("get", "/similar/p1a?k=0", None, "query.k"),
        ("post", "/recommend", {"history": "p1a"}, "body.history"),
        ("post", "/recommend", {"history": [["p1a"]]}, "body.history.0"),
        ("post", "/recommend", {"history": ["p1a"] * 10_001}, "body.history"),
        ("post", "/recommend", {"history": [], "k": 5000}, "body.k"),
        ("post", "/recommend", {"history": [], "kk": 5}, "body.kk"),
        ("post", "/recommend", {"history": [""]}, "body.history.0"),
        ("post", "/recommend", {"history": [], "rerank": "mmr:x"}, "body.rerank"),
        ("post", "/events", {"events": [{"event_id": "1"}]}, "body.events.0.user_id"),
        ("post", "/events", {"events": "x"}, "body.events"),
        ("post", "/events", {"events": [event("1", "u", "i", "purchase")]}, "body.events.0.type"),
        (
            "post",
            "/events",
            {"events": [event("1", "u", "i") | {"timestamp": "yesterday"}]},
            "body.events.0.timestamp",
        ),
    ],
)
def test_bad_input_is_a_readable_422(
    client: TestClient, method: str, url: str, payload: Any, where: str
) -> None:
    r = client.request(method.upper(), url, json=payload)
    assert r.status_code == 422, r.text
    body = r.json()
    locs = [".".join(map(str, e["loc"])) for e in body["detail"]]
    assert any(loc.startswith(where) for loc in locs), locs
    assert where.split(".")[1] in body["message"]
    assert all(e["msg"] for e in body["detail"])


def test_non_json_body_is_a_422(client: TestClient) -> None:
    r = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "message" in r.json()


def test_huge_body_is_a_413(client: TestClient) -> None:
    big = json.dumps({"history": ["x" * 200] * 6000}).encode()  # ~1.2 MB
    r = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 1,048,576 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts arriving bytes
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    r = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    small = json.dumps({"history": ["p1a"]}).encode()
    r = client.post(
        "/recommend", content=iter([small]), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200  # a small chunked body goes through


# ---------------------------------------------------------------------------- filters
@pytest.fixture(scope="module")
def genre_dir(log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EASE on the pair data with a genre per item: "odd"/"even" by pair number, and
    "pair3" for the pair p3 too."""
    items = sorted(log["item_id"].unique())
    genres = {
        i: ("odd" if int(i[1:-1]) % 2 else "even") + (" pair3" if i[1:-1] == "3" else "")
        for i in items
    }
    feats = pd.DataFrame({"genres": pd.Series(genres)})
    data = Interactions.from_frame(log, item_features=feats)
    return EASE(l2=10.0).fit(data).save(tmp_path_factory.mktemp("genres") / "ease")


def reference(model_dir: Path, user: str, k: int, drop: set[str], keep: set[str] | None) -> list:
    """Brute force: the model's scores, the history and ``drop`` removed, only ``keep``."""
    model = Recommender.load(model_dir)
    scores = model.score(model.user_histories([user]))[0].astype(np.float64)
    ids = model.items_.ids
    seen = set(model.user_histories([user]).items.tolist())
    bad = [i for i, item in enumerate(ids) if item in drop or i in seen]
    bad += [i for i, item in enumerate(ids) if keep is not None and item not in keep]
    scores[bad] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [str(ids[i]) for i in order if np.isfinite(scores[i])]


def test_exclude_and_category_filter_the_list(
    tmp_path: Path, genre_dir: Path, log: pd.DataFrame
) -> None:
    feats = Recommender.load(genre_dir).item_features_
    odd = {str(i) for i, g in feats["genres"].items() if g.startswith("odd")}
    with make_client(tmp_path, {"default": genre_dir}) as c:
        plain = items_of(c.get("/recommend/u5", params={"k": 6}).json())
        drop = set(plain[:2])
        r = c.get("/recommend/u5", params={"k": 6, "exclude": sorted(drop)})
        assert r.status_code == 200
        assert items_of(r.json()) == reference(genre_dir, "u5", 6, drop, None)
        # a category: only its items, in the model's order; case-insensitive
        r = c.get("/recommend/u5", params={"k": 6, "category": "ODD", "exclude": "nope"})
        assert items_of(r.json()) == reference(genre_dir, "u5", 6, set(), odd)
        assert set(items_of(r.json())) <= odd
        # the same in a posted history, and for the popularity fallback
        posted = c.post(
            "/recommend", json={"history": user_items(log, "u5"), "k": 6, "category": "odd"}
        ).json()
        assert items_of(posted) == items_of(r.json())
        cold = c.post("/recommend", json={"history": [], "k": 4, "category": "pair3"}).json()
        assert cold["fallback"] is True and sorted(items_of(cold)) == ["p3a", "p3b"]
        # an unknown category is a 422 naming the known ones
        bad = c.get("/recommend/u5", params={"category": "jazz"})
        assert bad.status_code == 422
        assert "query.category: no item has category 'jazz'" in bad.json()["message"]
        assert "even, odd, pair3" in bad.json()["message"]


def test_category_needs_a_genre_column(client: TestClient) -> None:
    bad = client.post("/recommend", json={"history": ["p1a"], "category": "odd"})
    assert bad.status_code == 422 and "no category column" in bad.json()["message"]


# ---------------------------------------------------------------------------- similar
def test_similar_items(client: TestClient, tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    body = client.get("/similar/p4a", params={"k": 3}).json()
    assert body["item_id"] == "p4a" and body["variant"] == "default"
    assert items_of(body)[0] == "p4b" and [x["rank"] for x in body["items"]] == [1, 2, 3]
    r = client.get("/similar/not-an-item")
    assert r.status_code == 404 and "unknown item 'not-an-item'" in r.json()["detail"]
    assert client.get("/similar/p4a", params={"variant": "zzz"}).status_code == 404
    # popularity has no item vectors: co-occurrence in the stored history stands in
    with make_client(tmp_path, {"default": model_dirs["pop"]}) as pop:
        assert items_of(pop.get("/similar/p4a", params={"k": 1}).json()) == ["p4b"]


# ---------------------------------------------------------------------------- live events
def test_a_click_changes_the_next_list_at_once(
    client: TestClient, model_dirs: dict[str, Path], log: pd.DataFrame
) -> None:
    seen = user_items(log, "u5")
    clicked = next(f"p{p}a" for p in range(20) if f"p{p}a" not in seen)
    partner = clicked[:-1] + "b"
    before = client.get("/recommend/u5", params={"k": 5}).json()
    assert partner not in items_of(before)[:1]
    r = client.post("/events", json={"events": [event("c1", "u5", clicked, "click")]})
    assert r.json() == {"received": 1, "stored": 1, "duplicates": 0}
    after = client.get("/recommend/u5", params={"k": 5}).json()
    assert items_of(after)[0] == partner and clicked not in items_of(after)
    # exactly the list of the stored history plus the click, scored by the model itself
    model = Recommender.load(model_dirs["knn"])
    ref = model.recommend(histories=[[*seen, clicked]], k=5)
    assert items_of(after) == ref.item_ids[0].tolist()
    # an impression is not an interaction; a retried click is applied once
    client.post("/events", json={"events": [event("i1", "u5", partner, "impression")]})
    client.post("/events", json={"events": [event("c1", "u5", clicked, "click")]})
    assert items_of(client.get("/recommend/u5", params={"k": 5}).json()) == items_of(after)
    assert client.get("/health").json()["live_events"] == 1


def test_new_user_with_events_is_served_by_the_model(client: TestClient) -> None:
    client.post(
        "/events",
        json={"events": [event("n1", "fresh", "p9a"), event("n2", "fresh", "unknown-item")]},
    )
    body = client.get("/recommend/fresh", params={"k": 3}).json()
    assert body["fallback"] is False and items_of(body)[0] == "p9b"


def test_live_histories_survive_a_restart(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    with make_client(tmp_path, {"default": model_dirs["knn"]}) as first:
        first.post("/events", json={"events": [event("r1", "fresh", "p2b", "conversion")]})
        served = first.get("/recommend/fresh", params={"k": 3}).json()
    with make_client(tmp_path, {"default": model_dirs["knn"]}) as second:  # same database
        again = second.get("/recommend/fresh", params={"k": 3}).json()
        assert again["fallback"] is False and items_of(again) == items_of(served)
        assert items_of(again)[0] == "p2a"


def test_workers_sharing_a_store_see_each_others_events(
    tmp_path: Path, model_dirs: dict[str, Path]
) -> None:
    """Two processes' apps on one database (as `serve --workers 2` runs them): an event
    posted to one reaches the other's live histories within ``sync_seconds``."""
    variants = {"default": model_dirs["knn"]}
    with (
        make_client(tmp_path, variants, sync_seconds=0.05) as a,
        make_client(tmp_path, variants, sync_seconds=0.05) as b,
    ):
        a.post("/events", json={"events": [event("w1", "fresh", "p6a")]})
        deadline = time.monotonic() + 10
        while b.get("/health").json()["live_events"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        body = b.get("/recommend/fresh", params={"k": 1}).json()
        assert body["fallback"] is False and items_of(body) == ["p6b"]
        # posted again to the other worker: stored and applied once
        assert (
            b.post("/events", json={"events": [event("w1", "fresh", "p6a")]}).json()["duplicates"]
            == 1
        )
        assert b.get("/health").json()["live_events"] == 1


def test_events_are_idempotent_and_accept_iso_times(client: TestClient) -> None:
    batch = {
        "events": [
            event("a", "u1", "p1a", "impression"),
            event("b", "u1", "p1a", "click") | {"timestamp": "2024-05-01T12:00:00Z"},
            event(7, 3, 4, "conversion") | {"timestamp": "2024-05-01T12:00:00"},
        ]
    }
    assert client.post("/events", json=batch).json() == {
        "received": 3,
        "stored": 3,
        "duplicates": 0,
    }
    assert client.post("/events", json=batch).json() == {
        "received": 3,
        "stored": 0,
        "duplicates": 3,
    }
    store = client.app.state.service.store  # type: ignore[attr-defined]
    stored = {e.event_id: e for e in store.user_events()}
    assert set(stored) == {"b", "7"}
    assert stored["b"].timestamp == stored["7"].timestamp == 1714564800.0


# ---------------------------------------------------------------------------- A/B tests
def test_report_counts_by_hand_over_two_variants(
    tmp_path: Path, model_dirs: dict[str, Path]
) -> None:
    variants = {"knn": model_dirs["knn"], "ease": model_dirs["ease"]}
    with make_client(tmp_path, variants, traffic={"knn": 50, "ease": 50}, salt="t1") as c:
        served: dict[str, list[str]] = {"knn": [], "ease": []}
        for u in range(40):
            body = c.get(f"/recommend/u{u}", params={"k": 3}).json()
            served[body["variant"]].append(body["request_id"])
        assert len(served["knn"]) >= 5 and len(served["ease"]) >= 5
        events, n = [], 0
        plan = {"knn": (10, 3, 1), "ease": (8, 4, 0)}  # impressions, clicks, conversions
        for variant, (imp, clk, conv) in plan.items():
            rids = served[variant]
            for kind, count in (("impression", imp), ("click", clk), ("conversion", conv)):
                for j in range(count):
                    n += 1
                    events.append(event(f"e{n}", "u0", "p1a", kind, request_id=rids[j % len(rids)]))
        events.append(event("orphan", "u0", "p1a", "click"))  # no request: not attributed
        c.post("/events", json={"events": events})
        report = c.get("/experiments/report").json()
    assert [v["name"] for v in report["variants"]] == ["knn", "ease"]
    by_name = {v["name"]: v for v in report["variants"]}
    for variant, (imp, clk, conv) in plan.items():
        v = by_name[variant]
        assert (v["impressions"], v["clicks"], v["conversions"]) == (imp, clk, conv)
        assert v["ctr"] == clk / imp and v["conversion_rate"] == conv / imp
        assert v["ctr_ci"] == pytest.approx(list(wilson(clk, imp)))
    ctr = next(x for x in report["comparisons"] if x["metric"] == "ctr")
    assert (ctr["a"], ctr["b"]) == ("knn", "ease")
    assert ctr["diff"] == pytest.approx(4 / 8 - 3 / 10)
    pooled = 7 / 18
    z = (4 / 8 - 3 / 10) / np.sqrt(pooled * (1 - pooled) * (1 / 10 + 1 / 8))
    assert ctr["z"] == pytest.approx(z)


def test_assignment_is_sticky_across_app_instances(
    tmp_path: Path, model_dirs: dict[str, Path]
) -> None:
    variants = {"a": model_dirs["knn"], "b": model_dirs["pop"]}
    users = [f"u{i}" for i in range(30)] + ["someone-new"]
    runs = []
    for _ in range(2):
        with make_client(tmp_path, variants, traffic={"a": 40, "b": 60}, salt="s") as c:
            runs.append(
                [c.get(f"/recommend/{u}", params={"k": 1}).json()["variant"] for u in users]
            )
    expected = Experiment({"a": 40, "b": 60}, "s")
    assert runs[0] == runs[1] == [expected.assign(u) for u in users]
    assert set(runs[0]) == {"a", "b"}


def test_bad_config_is_a_config_error(model_dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="must sum to 100, got 90"):
        ServeConfig(variants={"a": "x", "b": "y"}, traffic={"a": 40, "b": 50})
    with pytest.raises(ConfigError, match="no share for b; no model for c"):
        ServeConfig(variants={"a": "x", "b": "y"}, traffic={"a": 100, "c": 0})
    with pytest.raises(ConfigError, match="variant name 'a b'"):
        ServeConfig(variants={"a b": "x"})
    cfg = ServeConfig(variants={"a": "x", "b": "y"}, admin_token="t")
    assert cfg.shares == {"a": 50.0, "b": 50.0}
    assert ServeConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown serve configuration key"):
        ServeConfig.from_json('{"variants": {"a": "x"}, "trafic": {}}')


# ---------------------------------------------------------------------------- admin
def test_reload_needs_the_token(
    client: TestClient, tmp_path: Path, model_dirs: dict[str, Path]
) -> None:
    assert client.post("/admin/reload").status_code == 401
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/admin/reload", headers=auth, json={"model_dir": str(model_dirs["ease"])})
    assert r.status_code == 200 and r.json()["served"]["model"] == "ease"
    assert client.get("/health").json()["variants"]["default"]["model"] == "ease"
    bad = client.post("/admin/reload", headers=auth, json={"model_dir": str(tmp_path)})
    assert bad.status_code == 422 and "not a saved model directory" in bad.json()["message"]
    assert client.post("/admin/reload", headers=auth, json={"variant": "x"}).status_code == 404
    with make_client(tmp_path, {"default": model_dirs["knn"]}, admin_token=None) as locked:
        r = locked.post("/admin/reload", headers=auth)
        assert r.status_code == 403 and "disabled" in r.json()["detail"]


def test_reload_under_concurrent_requests_loses_nothing(
    client: TestClient, model_dirs: dict[str, Path]
) -> None:
    lists = {
        name: Recommender.load(model_dirs[name]).recommend(["u5"], k=5).item_ids[0].tolist()
        for name in ("knn", "ease")
    }
    assert lists["knn"] != lists["ease"]
    answers: list[tuple[int, list[str]]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.get("/recommend/u5", params={"k": 5})
            answers.append((r.status_code, items_of(r.json()) if r.status_code == 200 else []))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for name in ("ease", "knn", "ease", "knn"):
        r = client.post("/admin/reload", headers=auth, json={"model_dir": str(model_dirs[name])})
        assert r.status_code == 200
        served = len(answers)
        while len(answers) < served + 3:  # let the new model answer a few
            time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join()
    assert len(answers) > 10
    assert all(status == 200 for status, _ in answers)
    # every answer is one model's list, and each model answered some
    assert {tuple(items) for _, items in answers} == {tuple(v) for v in lists.values()}


def test_health_and_metrics(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["traffic"] == {"default": 100.0}
    assert health["variants"]["default"]["model"] == "itemknn"
    client.get("/recommend/u1")
    client.get("/recommend/u1", params={"k": 0})
    client.get("/recommend/nobody")
    client.post("/events", json={"events": [event("m1", "u1", "p1a"), event("m2", "u1", "p1b")]})
    client.post("/events", json={"events": [event("m1", "u1", "p1a")]})
    text = client.get("/metrics").text
    route = 'endpoint="/recommend/{user_id}",method="GET"'
    assert f'recstack_http_requests_total{{{route},status="200"}} 2.0' in text
    assert f'recstack_http_requests_total{{{route},status="422"}} 1.0' in text
    assert 'recstack_http_request_seconds_bucket{endpoint="/recommend/{user_id}",le="0.02"}' in text
    assert 'recstack_events_received_total{type="click"} 3.0' in text
    assert "recstack_events_stored_total 2.0" in text
    assert 'recstack_recommendations_total{fallback="true",variant="default"} 1.0' in text


def test_postgres_store_behind_the_app(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    with postgres_cluster() as url:
        reset_postgres(url)
        with make_client(tmp_path, {"default": model_dirs["knn"]}, db=url) as c:
            rid = c.get("/recommend/u3").json()["request_id"]
            batch = {"events": [event("x", "u3", "p1a", "impression", request_id=rid)]}
            assert c.post("/events", json=batch).json()["stored"] == 1
            assert c.post("/events", json=batch).json()["stored"] == 0
            report = c.get("/experiments/report").json()
            assert report["variants"][0]["impressions"] == 1
