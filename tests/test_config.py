"""config.properties: secure defaults, and size limits that fit the largest allowed batch."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from handler.settings import HandlerSettings
from toolkit.serve.server import read_properties, with_overrides

REPO_ROOT = Path(__file__).resolve().parent.parent
PROPERTIES = read_properties((REPO_ROOT / "config.properties").read_text())


def test_every_listener_is_on_loopback() -> None:
    for key in ("inference_address", "management_address", "metrics_address"):
        assert urlparse(PROPERTIES[key]).hostname == "127.0.0.1", key
    for key in ("grpc_inference_address", "grpc_management_address"):
        assert PROPERTIES[key] == "127.0.0.1", key


def test_token_authorization_and_registration_are_locked_down() -> None:
    assert "disable_token_authorization" not in PROPERTIES
    assert PROPERTIES["allowed_urls"] == "^$"
    assert PROPERTIES["default_workers_per_model"] == "1"
    assert PROPERTIES["install_py_dep_per_model"] == "false"
    assert PROPERTIES["enable_envvars_config"] == "false"
    assert PROPERTIES["metrics_mode"] == "prometheus"


def test_size_limits_fit_the_largest_allowed_batch() -> None:
    limit = HandlerSettings.max_items_per_request
    # A worst-case 768-d answer: every float printed at full length.
    vector = json.dumps([-0.012345678901234567] * 768, separators=(",", ":"))
    response = "[" + ",".join([vector] * limit) + "]"
    assert len(response.encode()) < int(PROPERTIES["max_response_size"])
    pair = ["Represent the Wikipedia document for retrieval:", "word " * 2000]
    request = json.dumps({"inputs": [pair] * limit})
    assert len(request.encode()) < int(PROPERTIES["max_request_size"])


def test_overrides_replace_and_append() -> None:
    text = "a=1\n# b=2\nc=3\n"
    assert with_overrides(text, {"c": "9", "d": "4"}) == "a=1\n# b=2\nc=9\nd=4\n"


def test_no_debug_or_remote_switch_is_on() -> None:
    text = (REPO_ROOT / "config.properties").read_text()
    assert "0.0.0.0" not in text
    keys = set(PROPERTIES)
    assert not {key for key in keys if "debug" in key.lower()}
    assert PROPERTIES["load_models"] == ""
    assert PROPERTIES.get("enable_grpc_ssl") == "false" and PROPERTIES["grpc_inference_address"] == "127.0.0.1"
    assert "snapshot_store" not in keys
    # No archive can exist under /dev/null: workflow registration always fails (test_observability.py).
    assert PROPERTIES["workflow_store"] == "/dev/null"
    kserve = read_properties((REPO_ROOT / "deploy" / "kserve" / "config.properties").read_text())
    assert kserve["workflow_store"] == "/dev/null" and kserve["enable_model_api"] == "false"


def test_handler_metrics_reach_prometheus() -> None:
    for path in (REPO_ROOT / "config.properties", REPO_ROOT / "deploy" / "kserve" / "config.properties"):
        properties = read_properties(path.read_text())
        assert properties["metrics_mode"] == "prometheus" and properties["model_metrics_auto_detect"] == "true"
