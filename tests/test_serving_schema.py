"""Property-based tests of the HTTP API against its own OpenAPI document (schemathesis):
for generated schema-valid and schema-invalid requests to every operation, no 5xx, every
response conforms to the documented status codes, content types and schemas, and invalid
requests are rejected."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from recstack.data import Interactions
from recstack.models import EASE
from recstack.serving import ServeConfig, create_app
from serving_support import pair_log

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service (two variants, a token for reloads) and its OpenAPI document."""
    base = tmp_path_factory.mktemp("schema")
    data = Interactions.from_frame(pair_log())
    dirs = {name: EASE(l2=l2).fit(data).save(base / name) for name, l2 in (("a", 10), ("b", 50))}
    config = ServeConfig(
        variants={k: str(v) for k, v in dirs.items()},
        db=f"sqlite:///{base / 'events.db'}",
        admin_token=TOKEN,
        # above the largest schema-valid body (10,000 events), so the schema's own bounds
        # answer (422) rather than the size guard (413, which schemathesis does not count
        # as rejecting invalid data)
        max_body_bytes=1 << 26,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(config))


#: generated requests per operation: bounded for CI
EXAMPLES = 25


def test_api_conforms_to_its_schema(api: Any) -> None:
    """Every operation: generated requests get no 5xx and conforming responses (status
    code documented, content type, body schema, headers); schema-invalid requests are
    rejected.

    Not checked: that every schema-valid request is accepted (a re-ranker spec,
    ``rerank=mmr:0.3``, is a small language whose values have ranges: a request the schema
    allows can still name an unknown re-ranker, and gets a 422 saying so); and, for GET
    operations, that schema-invalid requests are rejected: a query string is text, so the
    "number" generated for a string parameter arrives as a valid string."""
    calls: Counter[str] = Counter()
    for operation, mode in itertools.product(_operations(api), GenerationMode):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples on every CI run
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            calls[case.meta.generation.mode] += 1
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"},
                excluded_checks=[positive_data_acceptance]
                + ([negative_data_rejection] if case.method.upper() == "GET" else []),
            )

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid: an operation without inputs
            assert mode == GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # name the operation: hypothesis shows the failing case
            raise AssertionError(f"{operation.label} ({mode}): {str(exc)[:3000]}") from exc
    assert calls[GenerationMode.POSITIVE] >= EXAMPLES  # examples ran in both modes
    assert calls[GenerationMode.NEGATIVE] >= EXAMPLES


def test_the_schema_covers_every_route(api: Any) -> None:
    """The generated tests reach every endpoint the app serves (none left undocumented)."""
    documented = {(op.method.upper(), op.path) for op in _operations(api)}
    assert ("GET", "/recommend/{user_id}") in documented
    assert ("POST", "/events") in documented
    assert ("GET", "/experiments/report") in documented
    assert ("POST", "/admin/reload") in documented
    assert len(documented) >= 12


def _operations(api: Any) -> list[Any]:
    return [result.ok() for result in api.get_all_operations()]


def test_static_files_are_not_operations(api: Any) -> None:
    paths = {op.path for op in _operations(api)}
    assert not any(p.startswith("/static") for p in paths)
