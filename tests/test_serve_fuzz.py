"""Fuzzing `tfcnn serve` from its own OpenAPI schema with schemathesis: for every operation,
valid and schema-violating requests (a bounded number of each) must never get a 5xx,
invalid ones must be refused with a 4xx, and every answer must be one the schema documents
(status code, content type, body).

schemathesis's pytest plugin (`from_fixture`) does not run under pytest 9, so the test
draws cases from each operation's Hypothesis strategy itself.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tfcnn.serve.app import BackgroundServer, create_app

NAME = "digits"
EXAMPLES = 40  # cases per operation and mode: 30 × 40 in all, under a minute
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
OPERATIONS = [
    "GET /info", "POST /predict", "POST /explain",
    "GET /v1/models/{name}", "GET /v1/models/{name}/versions/{version}",
    "GET /v1/models/{name}/metadata", "GET /v1/models/{name}/versions/{version}/metadata",
    "POST /v1/models/{name}:predict", "POST /v1/models/{name}/versions/{version}:predict",
    "GET /v2", "GET /v2/health/live", "GET /v2/health/ready",
    "GET /v2/models/{name}", "GET /v2/models/{name}/versions/{version}",
    "GET /v2/models/{name}/ready", "GET /v2/models/{name}/versions/{version}/ready",
    "POST /v2/models/{name}/infer", "POST /v2/models/{name}/versions/{version}/infer",
]


@pytest.fixture(scope="module")
def api():
    from tfcnn.models.network import build_model

    model = build_model("4C3-P2-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                        prepare="mnist", dataset="mnist")
    with BackgroundServer(create_app(model, NAME, max_body_bytes=2**20)) as running:
        schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
        operations = {}
        for result in schema.get_all_operations():
            operation = result.ok()
            operations[f"{operation.method.upper()} {operation.path}"] = operation
        yield operations


def test_every_operation_is_fuzzed(api):
    assert sorted(api) == sorted(OPERATIONS)


# Operations without parameters or body have no invalid requests to make.
NO_INPUT = {"GET /info", "GET /v2", "GET /v2/health/live", "GET /v2/health/ready"}
CASES = [pytest.param(label, mode, id=f"{label} {mode.value}") for label in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or label not in NO_INPUT]


@pytest.mark.slow
@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_request_gets_a_server_error(api, label, mode):
    operation = api[label]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        case.call_and_validate(checks=CHECKS)

    fuzz()
