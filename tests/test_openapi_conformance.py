# SPDX-License-Identifier: MIT
"""The OpenAPI document against the API it describes: schemathesis generates requests from
/openapi.json (valid and invalid ones) and checks every answer against the document: its
status codes, content types, response schemas, and never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.test_open_internet import Site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("MIMAMORI_SWEEP_S", "0")
    s = Site(tmp_path / "m.db")
    yield s
    s.app.state.store.close()


def test_every_answer_is_one_the_openapi_document_gives(site: Site) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", site.app)
    failures: list[str] = []
    ops = 0
    for result in schema.get_all_operations():
        op = result.ok()
        ops += 1

        @given(case=op.as_strategy())
        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            if case.operation.path.startswith("/api/"):
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {site.token}"}
            # every check but positive_data_acceptance: the server's rules for ids, time
            # zones and settings are richer than a JSON schema says (a 400 for those)
            case.call_and_validate(excluded_checks=[checks.positive_data_acceptance])

        try:
            check()
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - list them all
            failures.append(f"{op.method.upper()} {op.path}: {str(e)[:600]}")
    assert ops >= 20
    assert not failures, "\n".join(failures)
