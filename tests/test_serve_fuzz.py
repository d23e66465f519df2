"""Schemathesis fuzzes every operation of the server's OpenAPI schema: no input may cause a 5xx."""

import pytest

from conftest import MeanRedClassifier
from imagesafety.serve import ServeConfig

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from serve_helpers import running_server  # noqa: E402


def test_no_input_causes_a_server_error(tmp_path):
    audit = tmp_path / "audit.sqlite"
    with running_server(ServeConfig(auth=False, audit_url=f"sqlite:///{audit}"), {"red": MeanRedClassifier()}) as (
        url,
        _,
        _,
    ):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/moderations", "/v1/classify", "/v1/models"}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            def fuzz(case):
                case.call_and_validate(checks=[not_a_server_error])

            fuzz()
