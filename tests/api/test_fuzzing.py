"""Schemathesis against the real app: every operation, the contract's checks, zero failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.support.accounts import new_customer
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

CONFIG = Path(__file__).parents[1] / "schemathesis.toml"
OPERATIONS = 20  # every operation of the OpenAPI document
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "use_after_free",
    "status_code_conformance",
    "content_type_conformance",
)
# Below pytest-timeout's 300 s for the test as a whole, so that a slow run fails with the
# fuzzer's output rather than being cut off by the plugin with none.
FUZZ_SECONDS = 240


@pytest.mark.slow
@pytest.mark.timeout(FUZZ_SECONDS + 60)
def test_schemathesis_finds_nothing(settings: Settings, runtime: Runtime, tmp_path: Path) -> None:
    # Unlimited, so the fuzzer's thousand calls never meet the quota.
    customer = new_customer(runtime, plan="enterprise")
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with web_process(settings, workers=2) as base:
        run = subprocess.run(
            [
                str(schemathesis),
                "--config-file",
                str(CONFIG),
                "run",
                f"{base}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {customer.secret}",
                "--checks",
                ",".join(CHECKS),
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "60",
                "--seed",
                "20261128",
                "--workers",
                "2",
                "--request-timeout",
                "15",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=FUZZ_SECONDS,
            # Schemathesis keeps a `.schemathesis/` cache in its working directory: not the repo.
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # The report, not the console's wording: every operation ran, none failed or errored.
    (report,) = tmp_path.glob("*.xml")
    suites = ElementTree.parse(report).getroot()
    cases = suites.findall(".//testcase")
    names = {str(c.get("name")) for c in cases}
    # Every operation of the document (the OpenAPI document's own route is not in it), and the
    # stateful phase's links between them.
    assert len(names - {"Stateful tests"}) == OPERATIONS and "Stateful tests" in names, names
    assert not [c.get("name") for c in cases if c.find("failure") is not None]
    assert not [c.get("name") for c in cases if c.find("error") is not None]
