"""Self-contained HTML comparison reports (tables + matplotlib figures) and their JSON twin."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from recstack.data.splits import Split
    from recstack.evaluation.evaluator import EvaluationResult

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.best td { font-weight: 600; }
.figs { display: flex; flex-wrap: wrap; gap: 1rem; }
.figs img { max-width: 520px; width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: .85rem; }
"""


def _png(fig: Figure) -> str:
    """A figure as an inline ``<img>`` (base64 PNG), so the report is one file."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame, best: str | None = None, digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [df.index.name or "", *df.columns])
    rows = []
    for name, row in df.iterrows():
        cells = "".join(
            f"<td>{v:.{digits}f}</td>"
            if isinstance(v, float | np.floating)
            else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        cls = ' class="best"' if best is not None and name == best else ""
        rows.append(f"<tr{cls}><td>{html.escape(str(name))}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _metric_curves(curves: Mapping[str, pd.DataFrame]) -> str:
    """NDCG/HR/recall against K, one line per model."""
    import matplotlib.pyplot as plt

    metrics = ["ndcg", "hr", "recall"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.4))
    for ax, metric in zip(axes, metrics, strict=True):
        for name, curve in curves.items():
            ax.plot(curve.index, curve[metric], marker=".", label=name)
        ax.set_xlabel("K")
        ax.set_title(f"{metric}@K")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _tradeoff(metrics: pd.DataFrame, k: int) -> str:
    """Accuracy against catalog coverage and novelty: who buys accuracy with diversity."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, other in zip(axes, (f"coverage@{k}", f"novelty@{k}"), strict=True):
        if other not in metrics.columns:
            ax.set_visible(False)
            continue
        ax.scatter(metrics[other], metrics[f"ndcg@{k}"])
        for name, row in metrics.iterrows():
            ax.annotate(
                str(name),
                (row[other], row[f"ndcg@{k}"]),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel(other)
        ax.set_ylabel(f"ndcg@{k}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


#: beyond-accuracy metrics a re-ranking sweep trades NDCG for (x axes of its figure)
_SWEEP_AXES = ("ild", "coverage", "novelty", "miscalibration")


def _sweep_curves(sweeps: Mapping[str, pd.DataFrame]) -> str:
    """NDCG against each beyond-accuracy metric along each model's re-ranking sweep; the
    re-ranker's chosen value is starred and the ends of each curve are labeled."""
    import matplotlib.pyplot as plt

    first = next(iter(sweeps.values()))
    k = first.attrs.get("k", 10)
    axes_keys = [m for m in _SWEEP_AXES if f"{m}@{k}" in first.columns]
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(3.6 * len(axes_keys), 3.4))
    for ax, metric in zip(np.atleast_1d(axes), axes_keys, strict=True):
        for name, sweep in sweeps.items():
            x, y = sweep[f"{metric}@{k}"].to_numpy(), sweep[f"ndcg@{k}"].to_numpy()
            (line,) = ax.plot(x, y, marker=".", label=name)
            chosen = sweep.index == sweep.attrs.get("value")
            ax.scatter(x[chosen], y[chosen], marker="*", s=120, color=line.get_color())
            for pos in (0, len(sweep) - 1):
                ax.annotate(
                    f"{sweep.attrs.get('param', '')}={sweep.index[pos]:g}",
                    (x[pos], y[pos]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xlabel(f"{metric}@{k}")
        ax.set_ylabel(f"ndcg@{k}")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _segment_bars(segments: Mapping[str, pd.DataFrame], column: str, title: str) -> str:
    """Grouped bars of ``column`` per segment, one bar per model."""
    import matplotlib.pyplot as plt

    names = list(segments)
    labels = list(next(iter(segments.values())).index)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, name in enumerate(names):
        ax.bar(x + i * width, segments[name][column].reindex(labels).to_numpy(), width, label=name)
    ax.set_xticks(x + width * (len(names) - 1) / 2, [str(s) for s in labels], fontsize=8)
    ax.set_ylabel(column)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _curves(result: EvaluationResult) -> pd.DataFrame:
    """NDCG, HR and recall at every K up to the longest list (index ``K``)."""
    from recstack.evaluation import metrics as M

    k_max = result.hits.shape[1]
    rows = {
        k: {
            "ndcg": float(M.ndcg(result.hits[:, :k], result.n_relevant).mean()),
            "hr": float(M.hit_rate(result.hits[:, :k]).mean()),
            "recall": float(M.recall(result.hits[:, :k], result.n_relevant).mean()),
        }
        for k in range(1, k_max + 1)
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("K")


def write_report(
    results: Mapping[str, EvaluationResult],
    directory: str | Path,
    *,
    title: str = "recstack comparison",
    fit_seconds: Mapping[str, float] | None = None,
    split: Split | None = None,
    sweeps: Mapping[str, pd.DataFrame] | None = None,
    cold_start: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """Write ``report.html`` (tables and figures in one self-contained file) and
    ``results.json`` (the same numbers for machines) to ``directory``.

    Parameters
    ----------
    results : {model name: EvaluationResult}
        Results of the models on one split.
    fit_seconds : {model name: seconds}, optional
        Training times, shown beside the metrics.
    split : Split, optional
        The split, for its description (method, sizes).
    sweeps : {model name: DataFrame}, optional
        Re-ranking trade-off sweeps (:func:`recstack.evaluation.evaluator.rerank_sweep`)
        drawn as accuracy against diversity, coverage, novelty and miscalibration curves.
    cold_start : {title: DataFrame}, optional
        Cold-start tables (:mod:`recstack.evaluation.coldstart`: cold items, cold users),
        shown under their titles in a section of their own.

    Returns
    -------
    Path
        The path of ``report.html``.
    """
    from recstack.evaluation.compare import compare_results

    if not results:
        raise ValueError("write_report: no results")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    k = first.ks[0]
    metric = f"ndcg@{k}"
    table = compare_results(results, metric=metric)
    best = str(table.attrs["best"])
    shown = [c for c in table.columns if c.endswith(f"@{k}") or c in ("auc", "rmse", "mae")]
    main = table[[*shown, f"p_{metric}"]].copy()
    if fit_seconds:
        main["fit s"] = [float(fit_seconds.get(n, float("nan"))) for n in main.index]
    main["eval s"] = [float(results[n].eval_seconds) for n in main.index]
    full = pd.DataFrame({n: r.metrics for n, r in results.items()}).T.rename_axis("model")

    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">recstack report, {time.strftime("%Y-%m-%d %H:%M")}; '
        f"{first.n_users:,} {first.on} users, {first.n_items:,} items; full ranking over the "
        "catalog, history items excluded; binary relevance, trec_eval definitions.</p>",
    ]
    if split is not None:
        info = split.info or {}
        desc = ", ".join(
            f"{name} {getattr(split, name).n_events:,} events"
            for name in ("train", "valid", "test")
            if getattr(split, name) is not None
        )
        parts.append(
            f'<p class="note">split: {html.escape(str(info.get("method", "given")))} ({desc})</p>'
        )
    parts += [
        f"<h2>Accuracy and beyond-accuracy at K={k}</h2>",
        _table(main, best=best),
        f'<p class="note">p_{metric}: paired t-test of per-user {metric} against the best '
        f"model ({html.escape(best)}); bold: best.</p>",
        "<h2>Metric@K curves</h2>",
        '<div class="figs">',
        _metric_curves({n: _curves(r) for n, r in results.items()}),
        "</div>",
        "<h2>Accuracy against coverage and novelty</h2>",
        '<div class="figs">',
        _tradeoff(full, k),
        "</div>",
        "<h2>Segments</h2>",
        '<p class="note">Users by quartile of history length (the sparse-data view), and '
        "relevant items by popularity (head = the most popular 20% of items).</p>",
        '<div class="figs">',
    ]
    segments = {n: r.segments for n, r in results.items()}
    for group, label in (("activity", "users by activity"), ("popularity", "items by popularity")):
        parts.append(
            _segment_bars({n: s[s["group"] == group] for n, s in segments.items()}, metric, label)
        )
    parts.append("</div>")
    for name, seg in segments.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(_table(seg.drop(columns="group")))
    if sweeps:
        one = next(iter(sweeps.values()))
        name, param = one.attrs.get("reranker", "re-ranking"), one.attrs.get("param", "")
        parts += [
            f"<h2>Re-ranking trade-offs ({html.escape(str(name))})</h2>",
            f'<p class="note">NDCG against intra-list diversity, catalog coverage, novelty and '
            f"miscalibration as {html.escape(str(param))} sweeps from the plain ranking to the "
            "strongest re-ranking; a star marks the value the lists above use.</p>",
            '<div class="figs">',
            _sweep_curves(sweeps),
            "</div>",
        ]
        for model, sweep in sweeps.items():
            k_s = sweep.attrs.get("k", k)
            cols = [c for c in (f"{m}@{k_s}" for m in ("ndcg", *_SWEEP_AXES)) if c in sweep]
            parts += [f"<h3>{html.escape(model)}</h3>", _table(sweep[cols])]
    if cold_start:
        parts += [
            "<h2>Cold start</h2>",
            '<p class="note">Cold items: the models refitted on a split that holds a share of '
            "the items out entirely; HR/NDCG of those items, ranked against the whole catalog "
            "and among themselves (among cold); cold_share: share of list slots holding them; the "
            "random rows are expected values. Cold users: the fitted models scoring each test "
            "user from their last n events only.</p>",
        ]
        for name, cold in cold_start.items():
            parts += [f"<h3>{html.escape(name)}</h3>", _table(cold)]
    parts += ["<h2>All metrics</h2>", _table(full)]
    body = "\n".join(parts)
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )
    report = directory / "report.html"
    report.write_text(page, encoding="utf-8")
    pvalues = table[f"p_{metric}"].astype(float).to_dict()
    payload = {
        "title": title,
        "best": best,
        "metric": metric,
        "models": {
            n: {
                **r.to_dict(),
                "fit_seconds": None if not fit_seconds else fit_seconds.get(n),
                f"p_{metric}": pvalues[n],
            }
            for n, r in results.items()
        },
    }
    if sweeps:
        payload["sweeps"] = {
            n: {
                "param": sw.attrs.get("param"),
                "value": sw.attrs.get("value"),
                "rows": sw.reset_index().to_dict(orient="records"),
            }
            for n, sw in sweeps.items()
        }
    if cold_start:
        payload["cold_start"] = {
            name: cold.reset_index().to_dict(orient="records") for name, cold in cold_start.items()
        }
    (directory / "results.json").write_text(json.dumps(payload, indent=2, default=_jsonable))
    return report


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj).__name__)
