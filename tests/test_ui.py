"""The web page of the service (issue 8).

Two tiers: the JSON endpoints the page reads, through FastAPI's TestClient and checked
against references computed from the data; and the page itself in headless Chromium
driven by Playwright, against a real ``recstack serve`` process with two variants. The
browser tests skip when ``/usr/bin/chromium`` or the ``playwright`` package is missing.
They save screenshots to the folder ``$RECSTACK_TEST_ARTIFACTS`` names when it is set
(``1``: ``tests/artifacts``, which git ignores), else to a pytest temporary directory.

The data: 60 movies in 6 genres, 10 each, titled "The <Adjective> <genre noun>" (so
"planet" finds the 10 science-fiction titles), every third with a second genre; each user
watches 12 movies of two genres.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from fastapi.testclient import TestClient

from recstack.data import Interactions
from recstack.models import EASE, ItemKNN
from recstack.models.base import Recommender
from recstack.serving import ServeConfig, create_app
from recstack.serving.experiment import Experiment
from serving_support import free_port, pair_log

TOKEN = "s3cret"
REPO = Path(__file__).resolve().parents[1]
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")
NOUNS = ("Mission", "Wedding", "Letter", "Cellar", "Summer", "Planet")
ADJECTIVES = (
    "Silent", "Crimson", "Last", "Hidden", "Broken",
    "Golden", "Electric", "Midnight", "Wild", "Distant",
)  # fmt: skip
N_USERS = 150
#: the variant each user is assigned to (the served variants knn and ease, 50/50)
ASSIGNED = Experiment({"knn": 50, "ease": 50}, "recstack").assign
EVENTS_PER_USER = 12


def movies(suffix: str = "") -> pd.DataFrame:
    """Item features indexed by item ID: ``title`` and space-separated ``genres``."""
    rows = {}
    for g, (genre, noun) in enumerate(zip(GENRES, NOUNS, strict=True)):
        for j, adjective in enumerate(ADJECTIVES):
            second = f" {GENRES[(g + 1) % len(GENRES)]}" if j % 3 == 0 else ""
            rows[f"m{g * 10 + j}"] = (f"The {adjective} {noun}{suffix}", genre + second)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["title", "genres"])


def movie_log(seed: int = 0) -> pd.DataFrame:
    """Events ``user_id, item_id, timestamp``: each user watches 12 distinct movies of two
    genres, the lower-numbered movies of a genre more often (a popularity skew)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 11)
    rows = []
    t = 1_000_000_000
    for u in range(N_USERS):
        genres = rng.choice(len(GENRES), size=2, replace=False)
        pool = np.concatenate([g * 10 + np.arange(10) for g in genres])
        p = np.tile(weights, 2) / (2 * weights.sum())
        for m in rng.choice(pool, size=EVENTS_PER_USER, replace=False, p=p):
            rows.append((f"u{u}", f"m{m}", t))
            t += 60
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def fit_save(model: Recommender, data: Interactions, path: Path) -> Path:
    return model.fit(data).save(path)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return movie_log()


@pytest.fixture(scope="module")
def model_dirs(log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ItemKNN and EASE on the movies (with titles and genres); ItemKNN on retitled movies
    (for reload); ItemKNN on the planted-pair data, which has no item features."""
    base = tmp_path_factory.mktemp("ui-models")
    data = Interactions.from_frame(log, item_features=movies())
    retitled = Interactions.from_frame(log, item_features=movies(" Remastered"))
    return {
        "knn": fit_save(ItemKNN(neighbors=20), data, base / "knn"),
        "ease": fit_save(EASE(l2=20.0), data, base / "ease"),
        "knn-retitled": fit_save(ItemKNN(neighbors=20), retitled, base / "knn-retitled"),
        "ids": fit_save(ItemKNN(neighbors=10), Interactions.from_frame(pair_log()), base / "ids"),
    }


def make_client(tmp_path: Path, variants: dict[str, Path]) -> TestClient:
    config = ServeConfig(
        variants={k: str(v) for k, v in variants.items()},
        db=f"sqlite:///{tmp_path / 'events.db'}",
        admin_token=TOKEN,
    )
    return TestClient(create_app(config))


@pytest.fixture
def client(tmp_path: Path, model_dirs: dict[str, Path]) -> Iterator[TestClient]:
    variants = {"knn": model_dirs["knn"], "ease": model_dirs["ease"]}
    with make_client(tmp_path, variants) as c:
        yield c


def item_index(model_dir: Path) -> dict[str, int]:
    return {item: i for i, item in enumerate(Recommender.load(model_dir).items_.ids.tolist())}


def reference_search(log: pd.DataFrame, index: dict[str, int], query: str) -> list[str]:
    """Brute force: titles containing the query (case-insensitive, spaces collapsed),
    those starting with it first, then by distinct users (most first), then by index."""
    q = " ".join(query.lower().split())
    titles = movies()["title"].str.lower()
    users = log.groupby("item_id")["user_id"].nunique()
    hits = [i for i, t in titles.items() if q in t]
    return sorted(hits, key=lambda i: (not titles[i].startswith(q), -users.get(i, 0), index[i]))


# ---------------------------------------------------------------------------- the page
def test_page_and_its_assets_are_served(client: TestClient) -> None:
    r = client.get("/", params={"user": "u3"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<script type="module" src="/static/app.js"></script>' in html
    assert 'data-testid="history-list"' in html and 'data-testid="report"' in html
    # every asset the page names is served, with its media type
    for path, kind in [
        ("/static/app.js", "javascript"),
        ("/static/style.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ]:
        assert path in html
        asset = client.get(path)
        assert asset.status_code == 200 and kind in asset.headers["content-type"], path
    script = client.get("/static/app.js").text
    assert '"data-testid": "rec-item"' in script and '"data-testid": "rec-explanation"' in script
    assert "cdn" not in (html + script).lower() and "http://" not in html + script
    assert client.head("/").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]


# ---------------------------------------------------------------------------- /items
@pytest.mark.parametrize("query", ["planet", "PLANET", "  the   Midnight ", "e", "ild", "zzz"])
def test_item_search_matches_a_brute_force_reference(
    client: TestClient, log: pd.DataFrame, model_dirs: dict[str, Path], query: str
) -> None:
    expected = reference_search(log, item_index(model_dirs["knn"]), query)
    r = client.get("/items", params={"q": query, "limit": 100})
    assert r.status_code == 200
    got = r.json()["items"]
    assert [x["item"] for x in got] == expected
    feats = movies()
    for x in got:
        assert x["title"] == feats.loc[x["item"], "title"]
        assert x["genres"] == feats.loc[x["item"], "genres"].split()
    top3 = client.get("/items", params={"q": query, "limit": 3}).json()["items"]
    assert [x["item"] for x in top3] == expected[:3]


def test_item_search_without_query_lists_the_most_popular(
    client: TestClient, log: pd.DataFrame, model_dirs: dict[str, Path]
) -> None:
    index = item_index(model_dirs["knn"])
    users = log.groupby("item_id")["user_id"].nunique()
    expected = sorted(index, key=lambda i: (-users.get(i, 0), index[i]))[:5]
    got = client.get("/items", params={"limit": 5}).json()["items"]
    assert [x["item"] for x in got] == expected


def test_item_lookup_by_id_keeps_order_and_shows_unknown_ids_bare(client: TestClient) -> None:
    r = client.get("/items", params=[("id", "m3"), ("id", "nope"), ("id", "m50")])
    assert r.json()["items"] == [
        {"item": "m3", "title": "The Hidden Mission", "genres": ["Action", "Comedy"]},
        {"item": "nope", "title": None, "genres": []},
        {"item": "m50", "title": "The Silent Planet", "genres": ["Sci-Fi", "Action"]},
    ]
    too_many = client.get("/items", params=[("id", f"m{i}") for i in range(1001)])
    assert too_many.status_code == 422 and "at most 1000 IDs" in too_many.json()["message"]


def test_items_of_a_model_without_features_are_ids_searched_by_id(
    tmp_path: Path, model_dirs: dict[str, Path]
) -> None:
    with make_client(tmp_path, {"default": model_dirs["ids"]}) as c:
        got = c.get("/items", params={"q": "P3"}).json()["items"]
        assert got == [
            {"item": "p3a", "title": None, "genres": []},
            {"item": "p3b", "title": None, "genres": []},
        ] or got == [
            {"item": "p3b", "title": None, "genres": []},
            {"item": "p3a", "title": None, "genres": []},
        ]
        info = c.get("/variants").json()["variants"][0]
        assert info["titles"] is False and info["genres"] is False


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_item_search_validation(client: TestClient, params: dict[str, Any], where: str) -> None:
    r = client.get("/items", params=params)
    assert r.status_code == 422 and f"query.{where}" in r.json()["message"]


def test_unknown_variant_is_a_404_not_a_500(client: TestClient) -> None:
    for path in ("/items", "/users", "/users/u1/history"):
        r = client.get(path, params={"variant": "nope"})
        assert r.status_code == 404 and "no variant 'nope'" in r.json()["detail"]


# ---------------------------------------------------------------------------- /users
def test_user_prefix_search_shortest_first(client: TestClient, log: pd.DataFrame) -> None:
    counts = log.groupby("user_id").size()
    ids = sorted(counts.index)
    for prefix in ("u1", "u14", "u", "", "x"):
        expected = sorted((u for u in ids if u.startswith(prefix)), key=lambda u: (len(u), u))
        got = client.get("/users", params={"q": prefix, "limit": 100}).json()["users"]
        assert [x["user"] for x in got] == expected[:100]
        assert all(x["n_events"] == counts[x["user"]] for x in got)
    first = client.get("/users", params={"q": "u1", "limit": 4}).json()["users"]
    assert [x["user"] for x in first] == ["u1", "u10", "u11", "u12"]


# ---------------------------------------------------------------------------- history
def test_history_is_stored_then_live_latest_first(client: TestClient, log: pd.DataFrame) -> None:
    stored = log[log["user_id"] == "u7"].sort_values("timestamp", kind="stable")
    body = client.get("/users/u7/history", params={"limit": 1000}).json()
    assert body["known"] is True and body["n_events"] == len(stored)
    assert body["variant"] == ASSIGNED("u7")
    assert [x["item"] for x in body["items"]] == stored["item_id"].tolist()[::-1]
    assert [x["timestamp"] for x in body["items"]] == stored["timestamp"].tolist()[::-1]
    assert not any(x["live"] for x in body["items"])
    feats = movies()
    assert all(x["title"] == feats.loc[x["item"], "title"] for x in body["items"])
    # a click and a conversion join the history at once (an unknown item without title);
    # an impression does not
    events = [
        {"event_id": "e1", "user_id": "u7", "item_id": "m59", "type": "click", "timestamp": 2e9},
        {"event_id": "e2", "user_id": "u7", "item_id": "m1", "type": "impression",
         "timestamp": 2e9 + 1},
        {"event_id": "e3", "user_id": "u7", "item_id": "new-item", "type": "conversion",
         "timestamp": 2e9 + 2},
    ]  # fmt: skip
    assert client.post("/events", json={"events": events}).status_code == 200
    body = client.get("/users/u7/history", params={"limit": 3}).json()
    assert body["n_events"] == len(stored) + 2
    assert body["items"] == [
        {"item": "new-item", "title": None, "genres": [], "timestamp": 2e9 + 2, "live": True},
        {"item": "m59", "title": "The Distant Planet", "genres": ["Sci-Fi", "Action"],
         "timestamp": 2e9, "live": True},
        {**body["items"][2], "item": stored["item_id"].iloc[-1], "live": False},
    ]  # fmt: skip
    assert body["items"][2]["title"] == feats.loc[stored["item_id"].iloc[-1], "title"]


def test_history_of_an_unknown_user_is_empty_then_live(client: TestClient) -> None:
    body = client.get("/users/nobody/history").json()
    assert body["known"] is False and body["n_events"] == 0 and body["items"] == []
    click = {"event_id": "c1", "user_id": "nobody", "item_id": "m2", "type": "click",
             "timestamp": 5.0}  # fmt: skip
    client.post("/events", json={"events": [click]})
    body = client.get("/users/nobody/history").json()
    assert body["known"] is False and body["n_events"] == 1
    assert [(x["item"], x["live"]) for x in body["items"]] == [("m2", True)]
    assert client.get("/users/nobody/history", params={"limit": 0}).status_code == 422


# ---------------------------------------------------------------------------- variants
def test_variants_list_names_traffic_and_models(client: TestClient) -> None:
    body = client.get("/variants").json()
    assert body == {
        "variants": [
            {"name": "knn", "traffic": 50.0, "model": "itemknn", "n_items": 60,
             "n_users": N_USERS, "titles": True, "genres": True},
            {"name": "ease", "traffic": 50.0, "model": "ease", "n_items": 60,
             "n_users": N_USERS, "titles": True, "genres": True},
        ]
    }  # fmt: skip


def test_a_request_may_choose_its_variant(client: TestClient, model_dirs: dict[str, Path]) -> None:
    assigned = ASSIGNED("u7")
    default = client.get("/recommend/u7").json()
    assert default["variant"] == assigned
    assert set(default) == {"request_id", "variant", "user_id", "fallback", "items"}
    for name in ("knn", "ease"):
        ref = Recommender.load(model_dirs[name]).recommend(["u7"], k=10).item_ids[0].tolist()
        got = client.get("/recommend/u7", params={"variant": name}).json()
        assert got["variant"] == name and [x["item"] for x in got["items"]] == ref
        posted = client.post(
            "/recommend", json={"history": ["m50", "m51"], "user_id": "u7", "variant": name}
        ).json()
        ref = Recommender.load(model_dirs[name]).recommend(histories=[["m50", "m51"]], k=10)
        assert posted["variant"] == name
        assert [x["item"] for x in posted["items"]] == ref.item_ids[0].tolist()
    bad = client.get("/recommend/u7", params={"variant": "nope"})
    assert bad.status_code == 422
    assert "query.variant: no variant 'nope' (variants: knn, ease)" in bad.json()["message"]
    bad = client.post("/recommend", json={"history": [], "variant": "nope"})
    assert bad.status_code == 422 and "body.variant" in bad.json()["message"]


def test_a_chosen_variant_gets_the_events_of_its_lists(client: TestClient) -> None:
    other = ({"knn", "ease"} - {ASSIGNED("u9")}).pop()
    listed = client.get("/recommend/u9", params={"variant": other, "k": 3}).json()
    events = [
        {"event_id": f"i{n}", "user_id": "u9", "item_id": x["item"], "type": "impression",
         "timestamp": 1e9, "request_id": listed["request_id"]}
        for n, x in enumerate(listed["items"])
    ] + [{"event_id": "k1", "user_id": "u9", "item_id": listed["items"][0]["item"],
          "type": "click", "timestamp": 1e9, "request_id": listed["request_id"]}]  # fmt: skip
    client.post("/events", json={"events": events})
    report = {v["name"]: v for v in client.get("/experiments/report").json()["variants"]}
    assert (report[other]["impressions"], report[other]["clicks"]) == (3, 1)


def test_reload_refreshes_the_catalog(client: TestClient, model_dirs: dict[str, Path]) -> None:
    assert client.get("/items", params={"q": "remastered"}).json()["items"] == []
    r = client.post(
        "/admin/reload",
        json={"variant": "knn", "model_dir": str(model_dirs["knn-retitled"])},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200
    found = client.get("/items", params={"q": "silent planet rem"}).json()["items"]
    assert found == [
        {"item": "m50", "title": "The Silent Planet Remastered", "genres": ["Sci-Fi", "Action"]}
    ]
    # the other variant keeps its own catalog
    kept = client.get("/items", params={"q": "silent planet", "variant": "ease"}).json()
    assert kept["items"][0]["title"] == "The Silent Planet"


# ---------------------------------------------------------------------------- in a browser
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
browser_test = pytest.mark.skipif(
    not CHROMIUM.is_file() or importlib.util.find_spec("playwright") is None,
    reason="the browser tests need /usr/bin/chromium and the playwright package",
)


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m recstack serve` with variants knn and ease (50/50) on a fresh SQLite
    database; yields its base URL."""
    cwd = tmp_path_factory.mktemp("ui-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (cwd / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recstack", "serve",
             "--variant", f"knn={model_dirs['knn']}", "--variant", f"ease={model_dirs['ease']}",
             "--db", f"sqlite:///{cwd / 'events.db'}", "--port", str(port)],
            cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {(cwd / 'server.log').read_text()}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start within 120 s")
                time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: the folder $RECSTACK_TEST_ARTIFACTS names (relative to the
    repository; ``1`` means ``tests/artifacts``), else a pytest temporary folder."""
    where = os.environ.get("RECSTACK_TEST_ARTIFACTS")
    if not where:
        return tmp_path_factory.mktemp("ui-artifacts")
    path = Path(__file__).parent / "artifacts" if where == "1" else REPO / where
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def open_page(browser: Any, server: str, artifacts: Path, request: pytest.FixtureRequest) -> Any:
    """Opens the page at a path and width, once it is wired; fails the test on any
    JavaScript error or error message in the console."""
    contexts = []
    errors: list[str] = []

    def open_(path: str = "/", width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=server)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(path)
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == []


def shoot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"ui-{name}.png"), full_page=True)


def wait_for_lists(page: Any, before: list[str] | None = None) -> list[str]:
    """Wait until every recommendation column shows a list, newer than ``before`` (the
    request IDs of the lists shown before); returns the request IDs shown."""
    page.wait_for_function(
        """(before) => {
            const lists = [...document.querySelectorAll("[data-testid=rec-list]")];
            return lists.length > 0 && lists.every((list, i) =>
                list.getAttribute("aria-busy") === "false" && list.dataset.requestId
                && list.dataset.requestId !== (before || [])[i]);
        }""",
        arg=before,
    )
    ids = page.eval_on_selector_all(
        "[data-testid=rec-list]", "lists => lists.map(l => l.dataset.requestId)"
    )
    return list(ids)


def shown(page: Any) -> list[tuple[str, list[str]]]:
    """Per column: the variant and the items shown, in order."""
    return list(
        page.eval_on_selector_all(
            "[data-testid=rec-list]",
            """ls => ls.map(l => [l.dataset.variant,
                [...l.querySelectorAll("[data-testid=rec-item]")].map(x => x.dataset.item)])""",
        )
    )


def served(server: str, user: str, variant: str, **params: Any) -> list[str]:
    body = httpx.get(
        f"{server}/recommend/{user}", params={"k": 10, "variant": variant, **params}
    ).json()
    return [x["item"] for x in body["items"]]


def report(server: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in httpx.get(f"{server}/experiments/report").json()["variants"]}


def no_horizontal_overflow(page: Any) -> bool:
    return bool(
        page.evaluate(
            """() => document.documentElement.scrollWidth <= window.innerWidth
                && [...document.querySelectorAll("body *")].every(
                    e => e.getBoundingClientRect().right <= window.innerWidth + 0.5
                        || e.closest("[hidden]") !== null)"""
        )
    )


@browser_test
@pytest.mark.slow
def test_pick_a_user_and_see_ten_explained_recommendations(
    open_page: Any, server: str, artifacts: Path, log: pd.DataFrame
) -> None:
    from playwright.sync_api import expect

    page = open_page("/")
    page.get_by_role("combobox", name="User ID").fill("u1")
    page.locator("#user-options [data-user=u12]").click()
    wait_for_lists(page)
    assert page.url.endswith("/?user=u12")
    expect(page.get_by_role("heading", level=1)).to_have_text("User u12")
    columns = shown(page)
    # two variants side by side: the assigned one first, each the service's own list
    assert [v for v, _ in columns] == [ASSIGNED("u12"), ({"knn", "ease"} - {ASSIGNED("u12")}).pop()]
    for variant, items in columns:
        assert items == served(server, "u12", variant)
    titles = movies()["title"]
    cards = page.get_by_test_id("rec-item")
    expect(cards).to_have_count(20)
    for i in range(20):
        card = cards.nth(i)
        assert card.locator(".item-button").inner_text() == titles[card.get_attribute("data-item")]
        expect(card.get_by_test_id("rec-explanation")).to_have_text(
            re.compile(r"^Because you watched The \w+ \w+")
        )
    # the history: titles and genres, latest first
    watched = log[log["user_id"] == "u12"].sort_values("timestamp")["item_id"].tolist()[::-1]
    history = page.get_by_test_id("history-item")
    expect(history).to_have_count(len(watched))
    assert [history.nth(i).get_attribute("data-item") for i in range(len(watched))] == watched
    expect(history.first.locator(".chip").first).to_have_text(
        movies().loc[watched[0], "genres"].split()[0]
    )
    shoot(page, artifacts, "user-laptop")

    # the keyboard alone: arrows and Enter pick another user from the suggestions
    before = wait_for_lists(page)
    box = page.get_by_role("combobox", name="User ID")
    box.fill("u14")
    page.locator("#user-options [data-user=u14]").wait_for()
    box.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", "user-option-0")
    box.press("Enter")
    wait_for_lists(page, before)
    expect(page.get_by_role("heading", level=1)).to_have_text("User u14")
    assert shown(page)[0][1] == served(server, "u14", ASSIGNED("u14"))


@browser_test
@pytest.mark.slow
def test_a_link_opens_a_user_and_diversifying_changes_the_lists(
    open_page: Any, server: str, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    page = open_page("/?user=u3")
    before = wait_for_lists(page)
    plain = shown(page)
    assert plain[0][1] == served(server, "u3", ASSIGNED("u3"))
    page.get_by_text("Diversify the lists").click()
    expect(page.get_by_role("switch", name="Diversify the lists")).to_be_checked()
    before = wait_for_lists(page, before)
    diverse = shown(page)
    for (variant, items), (_, old) in zip(diverse, plain, strict=True):
        assert items != old
        assert items == served(server, "u3", variant, rerank="mmr:0.5")
    # more genres in the diversified list (the re-ranker's item similarity is genre overlap)
    genres = movies()["genres"].str.split().str[0]
    assert genres[diverse[0][1]].nunique() > genres[plain[0][1]].nunique()
    expect(page.locator("#rec-meta-0")).to_contain_text("diversified")
    expect(page.get_by_test_id("rec-explanation")).to_have_count(20)
    shoot(page, artifacts, "diversified-laptop")
    page.get_by_text("Diversify the lists").click()
    wait_for_lists(page, before)
    assert shown(page) == plain


@browser_test
@pytest.mark.slow
def test_a_new_user_builds_a_history_by_title_and_gets_recommendations(
    open_page: Any, server: str, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    page = open_page("/")
    page.get_by_role("tab", name="New user").click()
    expect(page.get_by_role("tab", name="New user")).to_have_attribute("aria-selected", "true")
    ids = wait_for_lists(page)  # an empty history: the popular items, flagged
    expect(page.locator("#rec-meta-0")).to_contain_text("popularity fallback")
    page.get_by_label("Find titles to add to the history").fill("planet")
    results = page.get_by_test_id("item-result")
    expect(results).to_have_count(10)
    added = []
    for n in (0, 3):
        result = results.nth(n)
        added.append(result.get_attribute("data-item"))
        result.get_by_role("button").click()
        ids = wait_for_lists(page, ids)
        expect(result.get_by_role("button")).to_have_text("Added")
    history = page.get_by_test_id("history-item")
    assert [history.nth(i).get_attribute("data-item") for i in range(2)] == added[::-1]
    titles = movies()["title"]
    for variant, items in shown(page):
        assert len(items) == 10 and not set(items) & set(added)
        posted = httpx.post(
            f"{server}/recommend", json={"history": added, "k": 10, "variant": variant}
        ).json()
        assert items == [x["item"] for x in posted["items"]]
    expect(page.locator("#rec-meta-0")).not_to_contain_text("fallback")
    why = page.get_by_test_id("rec-explanation")
    expect(why).to_have_count(20)
    for i in range(20):
        text = why.nth(i).inner_text()
        assert text.startswith("Because you watched")
        assert any(titles[a] in text for a in added)
    shoot(page, artifacts, "new-user-laptop")
    # removing an item re-scores the shorter history
    page.get_by_role("button", name=f"Remove {titles[added[0]]} from the history").click()
    wait_for_lists(page, ids)
    expect(history).to_have_count(1)
    posted = httpx.post(
        f"{server}/recommend", json={"history": added[1:], "k": 10, "variant": shown(page)[0][0]}
    ).json()
    assert shown(page)[0][1] == [x["item"] for x in posted["items"]]


@browser_test
@pytest.mark.slow
def test_a_click_on_a_recommendation_reaches_the_report(
    open_page: Any, server: str, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    start = report(server)
    page = open_page("/?user=u5")
    wait_for_lists(page)
    variant, items = shown(page)[0]
    other = shown(page)[1][0]
    panel = page.locator(f"[data-testid=report-variant][data-variant={variant}]")
    clicks = start.get(variant, {}).get("clicks", 0)
    # one impression per item shown, attributed through the lists' request IDs
    for name in (variant, other):
        impressions = start.get(name, {}).get("impressions", 0) + 10
        cell = f"[data-testid=report-variant][data-variant={name}] [data-field=impressions]"
        expect(page.locator(cell)).to_have_text(str(impressions))
    first = page.get_by_test_id("rec-item").first
    first.locator(".item-button").click()
    expect(panel.locator("[data-field=clicks]")).to_have_text(str(clicks + 1))
    after = report(server)
    assert after[variant]["clicks"] == clicks + 1
    assert after[other]["clicks"] == start.get(other, {}).get("clicks", 0)
    ctr = after[variant]["ctr"]
    expect(panel.locator("[data-field=ctr]")).to_have_text(f"{100 * ctr:.1f}%")
    # the click opened the similar items, and joined the user's history at once
    title = movies()["title"][items[0]]
    expect(page.locator("#similar-title")).to_have_text(f"Similar to “{title}”")
    expect(page.get_by_test_id("similar-list").locator(":scope > li")).to_have_count(10)
    expect(page.get_by_test_id("history-item").first).to_have_attribute("data-item", items[0])
    expect(page.get_by_test_id("history-item").first).to_contain_text("live")
    # a conversion, from its button
    page.get_by_role("button", name=f"Record a conversion for {title}").first.click()
    expect(panel.locator("[data-field=conversions]")).to_have_text(
        str(start.get(variant, {}).get("conversions", 0) + 1)
    )
    shoot(page, artifacts, "clicked-laptop")


@browser_test
@pytest.mark.slow
def test_phone_width_has_no_horizontal_overflow(open_page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page = open_page("/?user=u2", width=390, height=844)
    wait_for_lists(page)
    expect(page.get_by_test_id("rec-item")).to_have_count(20)
    assert no_horizontal_overflow(page)
    # one column: the lists stack below each other
    boxes = [page.locator(f"#rec-list-{c}").bounding_box() for c in (0, 1)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]
    shoot(page, artifacts, "user-phone")
    page.get_by_role("tab", name="New user").click()
    page.get_by_label("Find titles to add to the history").fill("the")
    expect(page.get_by_test_id("item-result")).to_have_count(12)
    assert no_horizontal_overflow(page)
    shoot(page, artifacts, "new-user-phone")


@browser_test
@pytest.mark.slow
def test_controls_are_labelled_and_reachable_by_keyboard(open_page: Any) -> None:
    page = open_page("/?user=u4")
    wait_for_lists(page)
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll("input, select, button")]
            .filter(e => !e.closest("[hidden]"))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
                && !e.getAttribute("aria-labelledby") && !e.textContent.trim())
            .map(e => e.outerHTML)"""
    )
    assert unnamed == []
    lists = page.locator("[data-testid=rec-list][aria-live=polite]")
    assert lists.count() == 2
    # the first Tab reaches the skip link, which leads to the results
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "results"
