"""The ``recstack`` command line: data info, split, train, evaluate, compare, recommend,
explain, quickstart, serve, report-experiment.

Every command has ``--help``, prints readable tables (rich) and can write JSON for machines.
Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from recstack.errors import RecstackError

app = typer.Typer(
    help="recstack: train, evaluate, compare and serve recommenders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# piped output is not cut to 80 columns: tables there are read in files and CI logs
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

DataArg = Annotated[
    str,
    typer.Argument(
        help="A directory of RecBole atomic files, a CSV/TSV/Parquet file, a known name "
        "(movielens-100k, movielens-1m, ...), or a saved split directory.",
        show_default=False,
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Model hyper-parameter as key=value (repeatable)."),
]
KOpt = Annotated[str, typer.Option("--k", help="Cut-offs, comma separated, e.g. 10,20.")]


class CliError(RecstackError):
    """A bad command-line value (a parse error of an option)."""


# ---------------------------------------------------------------------------- helpers
def _parse_value(text: str) -> Any:
    """`--param` values: JSON numbers, booleans, null, lists; `true`/`none` any case; else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["factors=64", "reg=0.1"]`` -> ``{"factors": 64, "reg": 0.1}``."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--param expects key=value, got {pair!r}")
        params[key.strip()] = _parse_value(value)
    return params


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CliError(f"--k expects comma-separated positive integers, got {text!r}") from None
    if not ks or any(k <= 0 for k in ks):
        raise CliError(f"--k expects positive integers, got {text!r}")
    return tuple(sorted(set(ks)))


def _load(spec: str) -> Any:
    from recstack.data.readers import load_dataset

    with err.status(f"reading {spec}"):
        return load_dataset(spec)


def _as_split(data: Any, method: str = "loo", **params: Any) -> Any:
    """A saved split is used as is; a log is split (leave-last-out by default)."""
    from recstack.data.splits import Split, split

    return data if isinstance(data, Split) else split(data, method, **params)


def _model(name: str, params: dict[str, Any]) -> Any:
    from recstack.models.registry import create_model

    return create_model(name, **params)


#: metric families shown in tables, in order
_SHOWN = (
    "ndcg", "hr", "recall", "precision", "map", "mrr", "coverage", "novelty", "ild",
    "miscalibration",
)  # fmt: skip


def _metrics_by_k(metrics: dict[str, float], ks: tuple[int, ...], title: str) -> Table:
    """One model: a row per metric, a column per K (plus AUC/RMSE/MAE rows when present)."""
    table = Table(title=title, header_style="bold")
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for name in _SHOWN:
        if f"{name}@{ks[0]}" in metrics:
            table.add_row(name, *(f"{metrics.get(f'{name}@{k}', float('nan')):.4f}" for k in ks))
    for name in ("auc", "rmse", "mae"):
        if name in metrics:
            table.add_row(name, f"{metrics[name]:.4f}", *([""] * (len(ks) - 1)))
    return table


def _models_table(
    rows: dict[str, dict[str, float]], k: int, title: str, extra: dict[str, dict[str, str]]
) -> Table:
    """Several models: a row per model, headline metrics at cut-off ``k``."""
    keys = [f"{m}@{k}" for m in ("ndcg", "hr", "recall", "mrr", "coverage", "novelty")] + ["auc"]
    short = {"coverage": "cov", "novelty": "nov", "recall": "rec"}
    extra_cols = list(next(iter(extra.values()), {}))
    table = Table(title=title, header_style="bold")
    table.add_column("model")
    for key in keys + extra_cols:
        name, _, cut = key.partition("@")
        table.add_column(short.get(name, name) + (f"@{cut}" if cut else ""), justify="right")
    best = max(rows, key=lambda n: rows[n].get(f"ndcg@{k}", float("-inf")))
    for name, metrics in rows.items():
        cells = [f"{metrics[key]:.3f}" if key in metrics else "-" for key in keys]
        table.add_row(
            name, *cells, *extra.get(name, {}).values(), style="bold" if name == best else None
        )
    return table


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


RerankOpt = Annotated[
    str | None,
    typer.Option(
        "--rerank",
        help="Re-rank each user's top candidates, e.g. mmr:0.3 (mmr:LAMBDA, mmr-mean:LAMBDA, "
        "dpp:THETA, calibrate:LAMBDA, cap:N); the metrics then describe the re-ranked lists.",
    ),
]
CandidatesOpt = Annotated[
    int, typer.Option("--candidates", help="How many top-scored items --rerank chooses from.")
]


def _reranker(spec: str | None, candidates: int, ks: tuple[int, ...]) -> Any:
    """The ``--rerank`` re-ranker (None without one), checked before any work."""
    if spec is None:
        return None
    from recstack.ranking.rerank import check_candidates, parse_rerank

    check_candidates(candidates, ks[-1])
    return parse_rerank(spec)


def _fit_evaluate(
    model: Any, split: Any, ks: tuple[int, ...], reranker: Any = None, candidates: int = 100
) -> tuple[Any, float]:
    from recstack.evaluation import evaluate

    t0 = time.perf_counter()
    with err.status(f"fitting {model!r}"):
        model.fit(split.train, split.valid)
    fit_seconds = time.perf_counter() - t0
    result = evaluate(model, split, ks=ks, progress=True, reranker=reranker, candidates=candidates)
    return result, fit_seconds


def _rerank_note(result: Any) -> str:
    return (
        f"re-ranked with {result.rerank} from the top {result.candidates} "
        f"({1000 * result.rerank_seconds / max(1, result.n_users):.3f} ms per user)"
    )


# ---------------------------------------------------------------------------- commands
@app.command("models")
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered model names with a one-line description."""
    from recstack.models.registry import REGISTRY

    if as_json:
        out.print_json(json.dumps({name: desc for name, (_, desc) in REGISTRY.items()}))
        return
    table = Table(header_style="bold")
    table.add_column("name")
    table.add_column("description")
    for name, (_, desc) in REGISTRY.items():
        table.add_row(name, desc)
    out.print(table)


@data_app.command("info")
def data_info(
    data: DataArg,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summary here.")] = None,
) -> None:
    """Counts, density, time range and activity distribution of a data set."""
    from recstack.data.splits import Split

    loaded = _load(data)
    parts = (
        {"train": loaded.train, "valid": loaded.valid, "test": loaded.test}
        if isinstance(loaded, Split)
        else {"all": loaded}
    )
    summary = {name: _summary(part) for name, part in parts.items() if part is not None}
    for name, s in summary.items():
        table = Table(title=f"{data} [{name}]", show_header=False)
        for key, value in s.items():
            table.add_row(key, _fmt(value))
        out.print(table)
    if json_out:
        _write_json(json_out, summary)


def _summary(d: Any) -> dict[str, Any]:
    per_user = d.user_lengths[d.user_lengths > 0]
    per_item = np.bincount(d.item, minlength=d.n_items)
    q = (0.0, 0.25, 0.5, 0.75, 1.0)
    return {
        "events": d.n_events,
        "users": int((d.user_lengths > 0).sum()),
        "items": int((per_item > 0).sum()),
        "catalog items": d.n_items,
        "density": d.density,
        "rating range": [float(d.value.min()), float(d.value.max())],
        "time range": [
            time.strftime("%Y-%m-%d", time.gmtime(d.time.min())),
            time.strftime("%Y-%m-%d", time.gmtime(d.time.max())),
        ],
        "events per user (min/25%/50%/75%/max)": [float(x) for x in np.quantile(per_user, q)],
        "events per item (min/25%/50%/75%/max)": [
            float(x) for x in np.quantile(per_item[per_item > 0], q)
        ],
        "item features": list(d.item_features.columns) if d.item_features is not None else [],
        "user features": list(d.user_features.columns) if d.user_features is not None else [],
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4%}" if value < 1 else f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) if not isinstance(v, float) else f"{v:g}" for v in value)
    return f"{value:,}" if isinstance(value, int) else str(value)


@app.command("split")
def split_cmd(
    data: DataArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the split to.")],
    method: Annotated[
        str,
        typer.Option("--method", help="loo | ratio | temporal | random | cold-items | cold-users"),
    ] = "loo",
    param: ParamOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", help="atomic | csv | parquet (default: like the input)")
    ] = "atomic",
) -> None:
    """Split a data set and save the parts (train/valid/test + feature files) to a directory."""
    from recstack.data.split_io import save_split

    loaded = _load(data)
    parts = _as_split(loaded, method, **parse_params(param))
    save_split(parts, out_dir, format=fmt)
    table = Table(title=f"{method} split -> {out_dir}", header_style="bold")
    for col in ("part", "events", "users"):
        table.add_column(col, justify="right")
    for name in ("train", "valid", "test"):
        part = getattr(parts, name)
        if part is not None:
            table.add_row(name, f"{part.n_events:,}", f"{int((part.user_lengths > 0).sum()):,}")
    out.print(table)


@app.command("train")
def train_cmd(
    data: DataArg,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to save the model to.")],
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    full: Annotated[
        bool, typer.Option("--full/--split", help="Train on all the data, or on the train part.")
    ] = True,
) -> None:
    """Train a model and save it (a directory: config.json, arrays, ID maps; no pickle)."""
    loaded = _load(data)
    from recstack.data.splits import Split

    if isinstance(loaded, Split):
        train, valid = (
            (loaded.test_history().concat(loaded.test), None)
            if full
            else (loaded.train, loaded.valid)
        )
    else:
        train, valid = loaded, None
    rec = _model(model, _params(param, params_file))
    t0 = time.perf_counter()
    with err.status(f"fitting {rec!r}"):
        rec.fit(train, valid)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun every process trains; the first one saves
    rec.save(out_dir)
    out.print(f"trained {rec!r} in {time.perf_counter() - t0:.1f}s -> {out_dir}")


ParamsFileOpt = Annotated[
    Path | None,
    typer.Option("--params-file", help="JSON object of parameters (as written by `tune`)."),
]


def _params(param: list[str] | None, params_file: Path | None) -> dict[str, Any]:
    """Parameters from a JSON file, then ``--param`` pairs (which win)."""
    params: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text())
        except json.JSONDecodeError as exc:
            raise CliError(f"{params_file}: not valid JSON ({exc})") from None
        if isinstance(loaded, dict) and isinstance(loaded.get("params"), dict):
            loaded = loaded["params"]  # the file `tune --out` and `evaluate --json` write
        if not isinstance(loaded, dict):
            raise CliError(f"{params_file}: expected a JSON object of parameters")
        params.update(loaded)
    params.update(parse_params(param))
    return params


@app.command("tune")
def tune_cmd(
    data: DataArg,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    trials: Annotated[int, typer.Option("--trials", help="Number of fits.")] = 20,
    metric: Annotated[str, typer.Option("--metric", help="Validation metric to maximize.")] = (
        "ndcg@10"
    ),
    param: ParamOpt = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the best parameters as JSON here.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampler seed.")] = 0,
    method: Annotated[
        str, typer.Option("--split", help="Split method when DATA is not a saved split.")
    ] = "loo",
    origins: Annotated[
        int,
        typer.Option(
            "--origins",
            help="Score each trial on the mean of this many validation origins (the split's "
            "validation and each user's earlier events held out in turn; one fit each).",
        ),
    ] = 1,
) -> None:
    """Search hyper-parameters on the validation split (optuna TPE); `--param` pins values.
    The JSON written by `--out` is accepted by `evaluate --params-file`."""
    from recstack.evaluation.tune import tune

    if trials <= 0:
        raise CliError(f"--trials must be a positive integer, got {trials}")
    fixed = parse_params(param)
    _model(model, fixed)  # validate the name and pinned parameters before loading data
    split = _as_split(_load(data), method)

    def show(number: int, value: float, params: dict[str, Any]) -> None:
        err.print(f"trial {number + 1}/{trials}: {metric} {value:.4f}  {params}", highlight=False)

    result = tune(
        model, split, trials=trials, metric=metric, fixed=fixed, seed=seed, origins=origins,
        callback=show,
    )  # fmt: skip
    over = f" (mean of {result.origins} origins)" if result.origins > 1 else ""
    table = Table(
        title=f"best {model}: valid {metric} {result.best_value:.4f}{over}", show_header=False
    )
    for key, value in result.best_params.items():
        table.add_row(key, repr(value))
    out.print(table)
    if out_file is not None:
        _write_json(
            out_file,
            {
                "model": model,
                "params": result.best_params,
                "metric": metric,
                "valid": result.best_value,
                "origins": result.origins,
            },
        )
        out.print(
            f"parameters -> {out_file} (use: recstack evaluate DATA --model {model} "
            f"--params-file {out_file})"
        )


@app.command("evaluate")
def evaluate_cmd(
    data: DataArg,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    k: KOpt = "10,20",
    method: Annotated[
        str, typer.Option("--split", help="Split method when DATA is not a saved split.")
    ] = "loo",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics JSON.")] = None,
    recs_out: Annotated[
        Path | None, typer.Option("--recs", help="Write the top max(K) lists as CSV.")
    ] = None,
    rerank: RerankOpt = None,
    candidates: CandidatesOpt = 100,
) -> None:
    """Fit on train (valid for early stopping), rank the whole catalog for every test user
    from their history (train + valid, excluded), and print the metrics."""
    ks = parse_ks(k)
    rec = _model(model, _params(param, params_file))
    reranker = _reranker(rerank, candidates, ks)
    split = _as_split(_load(data), method)
    result, fit_seconds = _fit_evaluate(rec, split, ks, reranker, candidates)
    out.print(_metrics_by_k(result.metrics, ks, f"{model} on {data}"))
    out.print(
        f"{result.n_users:,} test users, {result.n_items:,} items; "
        f"fit {fit_seconds:.2f}s, evaluation {result.eval_seconds:.2f}s"
    )
    if result.rerank:
        out.print(_rerank_note(result))
    if json_out:
        payload = {
            "model": model,
            "params": rec.get_params(),
            "metrics": result.metrics,
            "fit_seconds": fit_seconds,
            "eval_seconds": result.eval_seconds,
            "n_users": result.n_users,
            "n_items": result.n_items,
        }
        if result.rerank:
            payload.update(rerank=result.rerank, candidates=result.candidates)
        _write_json(json_out, payload)
    if recs_out:
        recs_out.parent.mkdir(parents=True, exist_ok=True)
        result.recs.to_frame().to_csv(recs_out, index=False)


@app.command("compare")
def compare_cmd(
    data: DataArg,
    models: Annotated[str, typer.Option("--models", help="Comma-separated model names.")],
    report: Annotated[
        Path | None, typer.Option("--report", help="Directory for report.html + results.json.")
    ] = None,
    k: KOpt = "10,20",
    method: Annotated[
        str, typer.Option("--split", help="Split method when DATA is not a saved split.")
    ] = "loo",
    rerank: RerankOpt = None,
    candidates: CandidatesOpt = 100,
    cold_start: Annotated[
        bool,
        typer.Option(
            "--cold-start",
            help="Also run the cold-start protocols: every model refitted on a cold-item split "
            "(10% of the items held out, seed 0; HR/NDCG on them), and the fitted models scored "
            "from each test user's last 1, 3 and 5 events.",
        ),
    ] = False,
) -> None:
    """Evaluate several models on one split; print a table with paired significance tests,
    and write a self-contained HTML report (with --rerank, also the accuracy/diversity
    trade-off curves of a sweep of the re-ranker's parameter; with --cold-start, the
    cold-item and cold-user tables)."""
    ks = parse_ks(k)
    recs = {name: _model(name, {}) for name in _names(models)}  # validate before any work
    reranker = _reranker(rerank, candidates, ks)
    split = _as_split(_load(data), method)
    _run_comparison(
        recs,
        split,
        ks,
        title=str(data),
        report=report,
        reranker=reranker,
        candidates=candidates,
        cold_start=cold_start,
    )


def _names(models: str) -> list[str]:
    """Model names from a comma-separated option."""
    return [m.strip() for m in models.split(",") if m.strip()]


def _run_comparison(
    recs: dict[str, Any],
    split: Any,
    ks: tuple[int, ...],
    title: str,
    report: Path | None,
    reranker: Any = None,
    candidates: int = 100,
    cold_start: bool = False,
) -> dict[str, Any]:
    from recstack.evaluation.compare import compare_results

    results, fit_seconds = {}, {}
    for name, rec in recs.items():
        results[name], fit_seconds[name] = _fit_evaluate(rec, split, ks, reranker, candidates)
    metric = f"ndcg@{ks[0]}"
    table = compare_results(results, metric=metric)
    pvalues = table[f"p_{metric}"].astype(float).to_dict()
    extra = {
        name: {"fit s": f"{fit_seconds[name]:.1f}", "p": f"{pvalues[name]:.2g}"} for name in results
    }
    out.print(_models_table({n: r.metrics for n, r in results.items()}, ks[0], title, extra))
    out.print(f"p: paired t-test of per-user {metric} against the best model (bold)")
    if reranker is not None:
        out.print(_rerank_note(next(iter(results.values()))))
    cold = _cold_start_tables(recs, split, ks[0]) if cold_start else None
    if report is not None:
        from recstack.evaluation.evaluator import rerank_sweep
        from recstack.evaluation.report import write_report

        sweeps = None
        if reranker is not None:
            with err.status(f"sweeping {reranker.name}'s {reranker.param}"):
                sweeps = {
                    n: rerank_sweep(rec, split, reranker, ks=ks, candidates=candidates)
                    for n, rec in recs.items()
                }
            title = f"{title}, re-ranked with {reranker.spec} from the top {candidates}"
        path = write_report(
            results,
            report,
            title=title,
            fit_seconds=fit_seconds,
            split=split,
            sweeps=sweeps,
            cold_start=cold,
        )
        out.print(f"report: {path}")
    return results


def _cold_start_tables(recs: dict[str, Any], split: Any, k: int) -> dict[str, Any]:
    """The cold-item table (models refitted on a cold-item split of the same data) and the
    cold-user table (the fitted ``recs`` scored from short histories), printed and returned
    by title for the report."""
    from recstack.evaluation.coldstart import cold_item_table, cold_user_summary

    with err.status("cold items: fitting every model on a cold-item split"):
        items = cold_item_table(recs, split, ks=(k,))
    with err.status("cold users: scoring from the last 1, 3, 5 events"):
        users = cold_user_summary(recs, split, ks=(k,))
    n_cold = items.attrs["n_cold"]
    tables = {
        f"Cold items: {n_cold} items (10%, seed 0) held out, ranked against the whole catalog "
        "(among cold: ranked among the cold items only)": items,
        "Cold users: each test user scored from their last n events only": users,
    }
    for title, table in tables.items():
        out.print(_frame_table(table, title))
    return tables


def _frame_table(frame: Any, title: str) -> Table:
    """A DataFrame as a rich table (floats with 3 decimals)."""
    table = Table(title=title, header_style="bold")
    table.add_column(str(frame.index.name or ""))
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for name, row in frame.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        table.add_row(str(name), *cells)
    return table


@app.command("recommend")
def recommend_cmd(
    model_dir: Annotated[Path, typer.Option("--model", "-m", help="A saved model directory.")],
    user: Annotated[str | None, typer.Option("--user", help="A known user's ID.")] = None,
    history: Annotated[
        str | None, typer.Option("--history", help="A new user's item IDs, comma separated.")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="How many items.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    explain_recs: Annotated[
        bool, typer.Option("--explain", help="Say which history items drove each item.")
    ] = False,
) -> None:
    """Recommend for a known user (from their stored history) or a new user's history."""
    from recstack.models.base import Recommender

    if (user is None) == (history is None):
        raise CliError("give exactly one of --user or --history")
    if k <= 0:
        raise CliError(f"--k must be a positive integer, got {k}")
    rec = Recommender.load(model_dir)
    hist = _query_history(rec, user, history)
    result = rec.recommend(histories=hist, k=k)
    frame = result.to_frame()
    rows = list(
        zip(frame["item"].astype(str), frame["rank"].tolist(), frame["score"].tolist(), strict=True)
    )
    reasons: list[Any] = [None] * len(rows)
    if explain_recs:
        from recstack.explain import explain

        reasons = explain(rec, hist, result.index, scores=result.scores)[0]
    if as_json:
        payload = [
            {"item": i, "rank": r, "score": s}
            | ({"explanation": why.to_dict()} if why is not None else {})
            for (i, r, s), why in zip(rows, reasons, strict=True)
        ]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    titles = _titles(rec)
    table = Table(title=f"top {k} for " + (f"user {user}" if user else "the given history"))
    for col in ("rank", "item", "score") + (("title",) if titles is not None else ()):
        table.add_column(col)
    if explain_recs:
        table.add_column("why")
    for (item, rank, score), why in zip(rows, reasons, strict=True):
        extra = (titles.get(item, ""),) if titles is not None else ()
        table.add_row(
            str(rank), item, f"{score:.4g}", *extra, *((why.text,) if why is not None else ())
        )
    out.print(table)


@app.command("explain")
def explain_cmd(
    model_dir: Annotated[Path, typer.Option("--model", "-m", help="A saved model directory.")],
    item: Annotated[str, typer.Option("--item", help="The item to explain (its ID).")],
    user: Annotated[str | None, typer.Option("--user", help="A known user's ID.")] = None,
    history: Annotated[
        str | None, typer.Option("--history", help="A new user's item IDs, comma separated.")
    ] = None,
    k_items: Annotated[int, typer.Option("--k-items", help="History items to list.")] = 5,
    method: Annotated[
        str, typer.Option("--method", help="auto | leave-one-out | attention | recent[:N]")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain an item's score for a known user or a new user's history: the history items
    that drove it, their shares of the score, and one sentence."""
    from recstack.explain import explain, item_labels
    from recstack.models.base import Recommender

    if (user is None) == (history is None):
        raise CliError("give exactly one of --user or --history")
    if k_items <= 0:
        raise CliError(f"--k-items must be a positive integer, got {k_items}")
    rec = Recommender.load(model_dir)
    hist = _query_history(rec, user, history)
    target = rec.items_.index([item])
    scores = rec.score(hist)[0]
    shown = scores[target][:, None]  # the model's own score, as `recommend` shows it
    why = explain(rec, hist, target[:, None], scores=shown, k_items=k_items, method=method)[0][0]
    seen = np.isin(np.arange(rec.n_items), hist.items)
    # its place in the recommendations (history items excluded), None for a history item
    rank = None if seen[target[0]] else 1 + int((scores[~seen] > scores[target[0]]).sum())
    if as_json:
        payload = {
            "item": why.item,
            "rank": rank,
            "score": why.score,
            "explanation": why.to_dict(),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    names = dict(zip(rec.items_.ids, item_labels(rec), strict=True))  # titles, else IDs
    place = f"rank {rank}" if rank is not None else "in the history"
    out.print(f"{names[why.item]} ({place}, score {why.score:.4g})", highlight=False)
    out.print(why.text, highlight=False)
    if why.items:
        table = Table(header_style="bold")
        for col in ("history item", "name", "share"):
            table.add_column(col, justify="right" if col == "share" else "left")
        for i, share in why.items:
            table.add_row(i, names[i], f"{share:.1%}")
        out.print(table)


def _query_history(model: Any, user: str | None, history: str | None) -> Any:
    """The Histories of ``--user`` (stored) or of ``--history`` (comma-separated IDs)."""
    from recstack.data import Histories

    if user is not None:
        return model.user_histories([user])
    items = [x.strip() for x in (history or "").split(",") if x.strip()]
    return Histories.from_ids(model.items_, [items])


def _titles(model: Any) -> dict[str, str] | None:
    """Item titles, when the model kept item features with a title-like column."""
    feats = getattr(model, "item_features_", None)
    if feats is None:
        return None
    for col in ("title", "movie_title", "name"):
        if col in feats.columns:
            return dict(zip(feats.index.astype(str), feats[col].astype(str), strict=True))
    return None


@app.command("serve")
def serve_cmd(
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="A saved model directory (the 'default' variant)."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="An A/B variant as NAME=DIR (repeatable)."),
    ] = None,
    traffic: Annotated[
        list[str] | None,
        typer.Option(
            "--traffic", help="A variant's share of users as NAME=PCT (default: equal shares)."
        ),
    ] = None,
    db: Annotated[
        str,
        typer.Option("--db", help="Event store: sqlite:///path.db or postgresql://..."),
    ] = "sqlite:///recstack-events.db",
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Server processes.")] = 1,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token",
            help="Bearer token of POST /admin/reload (default: $RECSTACK_ADMIN_TOKEN).",
        ),
    ] = None,
    salt: Annotated[
        str, typer.Option("--salt", help="Experiment name hashed into the assignment.")
    ] = "recstack",
    ann_from: Annotated[
        int,
        typer.Option(
            "--ann-from",
            help="Catalog size from which dot-product models search a faiss index.",
        ),
    ] = 100_000,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch",
            help="The most concurrent requests scored in one call (1: each alone).",
        ),
    ] = 64,
) -> None:
    """Serve recommendations over HTTP (FastAPI on uvicorn; OpenAPI at /docs): live history
    updates from POST /events, A/B variants with sticky assignment, and their report."""
    from recstack.errors import require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    from recstack.serving.config import CONFIG_ENV, ServeConfig

    variants = {"default": str(model_dir)} if model_dir is not None else {}
    for name, value in _pairs(variant, "--variant").items():
        if name in variants:
            raise CliError(f"--variant {name} is given twice (--model is variant 'default')")
        variants[name] = value
    if not variants:
        raise CliError("give --model DIR or at least one --variant NAME=DIR")
    shares: dict[str, float] | None = None
    if traffic:
        try:
            shares = {k: float(v) for k, v in _pairs(traffic, "--traffic").items()}
        except ValueError:
            raise CliError(f"--traffic expects NAME=PERCENT, got {traffic}") from None
    if workers <= 0:
        raise CliError(f"--workers must be a positive integer, got {workers}")
    for name, path in variants.items():
        if not (Path(path) / "config.json").is_file():
            raise CliError(f"variant {name!r}: {path} is not a saved model directory")
    config = ServeConfig(
        variants=variants,
        traffic=shares,
        db=db,
        salt=salt,
        admin_token=admin_token,
        ann_from=ann_from,
        max_batch=max_batch,
        # several workers: each reads the events the others stored
        sync_seconds=1.0 if workers > 1 else 0.0,
    )
    err.print(f"serving {', '.join(f'{n}={p}' for n, p in variants.items())} on {host}:{port}")
    if workers == 1:
        from recstack.serving import create_app

        uvicorn.run(create_app(config), host=host, port=port, access_log=False)
        return
    import shutil
    import tempfile

    # each worker builds the app from the configuration in the environment; their metrics
    # are summed through a shared directory (ours, removed at exit, unless one is given)
    os.environ[CONFIG_ENV] = config.to_json()
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="recstack-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "recstack.serving.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}`` (a name given twice is an error)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = (p.strip() for p in pair.partition("="))
        if not sep or not key or not value:
            raise CliError(f"{option} expects NAME=VALUE, got {pair!r}")
        if key in out:
            raise CliError(f"{option} {key} is given twice")
        out[key] = value
    return out


@app.command("report-experiment")
def report_experiment_cmd(
    db: Annotated[str, typer.Option("--db", help="The service's event store URL.")] = (
        "sqlite:///recstack-events.db"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The A/B report of a service's event store: per variant impressions, CTR and
    conversion rate with 95% Wilson intervals, and two-proportion z-tests (the numbers of
    GET /experiments/report)."""
    from recstack.serving.experiment import experiment_report
    from recstack.serving.store import open_store

    with open_store(db) as store:
        report = experiment_report(store.counts_by_variant())
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    if not report["variants"]:
        out.print("no variant has served a list yet")
        return

    def rate(value: float | None, ci: list[float]) -> str:
        return "-" if value is None else f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"

    table = Table(title="A/B report (95% Wilson intervals)", header_style="bold")
    for col in ("variant", "impressions", "clicks", "conversions", "CTR", "conversion rate"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v in report["variants"]:
        table.add_row(
            v["name"],
            f"{v['impressions']:,}",
            f"{v['clicks']:,}",
            f"{v['conversions']:,}",
            rate(v["ctr"], v["ctr_ci"]),
            rate(v["conversion_rate"], v["conversion_ci"]),
        )
    out.print(table)
    if report["comparisons"]:
        tests = Table(title="two-proportion z-tests (diff = b - a)", header_style="bold")
        for col in ("a", "b", "metric", "diff", "z", "p"):
            tests.add_column(col, justify="right" if col in ("diff", "z", "p") else "left")
        for c in report["comparisons"]:
            cells = ["-" if c[f] is None else f"{c[f]:.4g}" for f in ("diff", "z", "p_value")]
            tests.add_row(c["a"], c["b"], c["metric"], *cells)
        out.print(tests)


@app.command("quickstart")
def quickstart_cmd(
    data: Annotated[
        str | None,
        typer.Argument(help="Data set (default: MovieLens-100K, else built-in synthetic data)."),
    ] = None,
    report: Annotated[Path, typer.Option("--report", help="Report directory.")] = Path(
        "recstack-quickstart"
    ),
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated models (default: a tour of families)."),
    ] = None,
) -> None:
    """The main job in one command: load MovieLens-100K (cache, download, or offline the
    built-in synthetic shop), split leave-last-out, train and compare several models, write
    the HTML report, and show one user's history next to their recommendations."""
    from recstack.models.registry import REGISTRY

    names = _names(models) if models else [n for n in QUICKSTART_MODELS if n in REGISTRY]
    recs = {n: _model(n, {}) for n in names}  # validate names before any work
    split = _as_split(_quickstart_data(data))
    ks = (10, 20)
    results = _run_comparison(recs, split, ks, title=data or "quickstart", report=report)
    best = max(results, key=lambda n: results[n].metrics["ndcg@10"])
    _show_user(best, results[best], split)


#: the models quickstart compares, strongest last; names not registered yet are skipped
QUICKSTART_MODELS = ("random", "popularity", "itemknn", "ease", "als", "bpr", "sasrec")


def _quickstart_data(data: str | None) -> Any:
    if data is not None:
        return _load(data)
    from recstack.data.readers import load_dataset
    from recstack.data.synthetic import make_shop

    try:
        with err.status("loading MovieLens-100K"):
            return load_dataset("movielens-100k")
    except RecstackError as exc:
        first_line = str(exc).splitlines()[0]
        err.print(
            f"[yellow]MovieLens-100K unavailable ({first_line}); "
            "using the built-in synthetic shop data set[/yellow]"
        )
        return make_shop(n_users=2000, n_items=1000, seed=0)


def _show_user(model_name: str, result: Any, split: Any) -> None:
    """One test user's recent history beside the best model's recommendations."""
    hist = split.test_history()
    user = str(result.recs.queries[0])
    uidx = int(hist.users.index([user])[0])
    events = hist.item[hist.indptr[uidx] : hist.indptr[uidx + 1]][-10:][::-1]
    feats = hist.item_features
    title_col = next(
        (c for c in ("title", "movie_title", "name") if feats is not None and c in feats.columns),
        None,
    )

    def label(item_ids: Any) -> list[str]:
        if title_col is None or feats is None:
            return [str(i) for i in item_ids]
        return [f"{i}: {feats[title_col].get(i, '')}" for i in item_ids]

    recs = result.recs
    rec_ids = [i for i in recs.item_ids[0] if i is not None]
    test_items = set(split.test.items.ids[split.test.item[split.test.user == uidx]])
    table = Table(
        title=f"user {user}: recent history vs. {model_name}'s top 10", header_style="bold"
    )
    table.add_column("history (newest first)")
    table.add_column("recommended (* = the held-out next item)")
    left = label(hist.items.ids[events])
    right = [
        f"{'* ' if i in test_items else ''}{t}"
        for i, t in zip(rec_ids, label(rec_ids), strict=True)
    ]
    for a, b in zip(left + [""] * (10 - len(left)), right[:10], strict=False):
        table.add_row(a, b)
    out.print(table)


def main() -> None:
    """Entry point: run the app, turning recstack's errors into one line on stderr."""
    try:
        app()
    except (RecstackError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
