"""Fuzzing `POST /explain` from the server's OpenAPI schema with schemathesis, as
tests/test_serve_fuzz.py does for the other routes: valid and schema-violating requests
never get a 5xx, invalid ones a 4xx, every answer one the schema documents."""

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

EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def operation():
    from tfcnn.models.network import build_model

    model = build_model("4C3-P2-8C3-D10", (28, 28, 1), tuple("0123456789"), seed=0,
                        preprocessing="mnist", dataset="mnist")
    with BackgroundServer(create_app(model, "digits", max_body_bytes=2**20)) as running:
        schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
        operations = {f"{op.method.upper()} {op.path}": op
                      for op in (result.ok() for result in schema.get_all_operations())}
        yield operations["POST /explain"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda mode: mode.value)
def test_explain_never_answers_a_server_error(operation, mode):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        case.call_and_validate(checks=CHECKS)

    fuzz()
