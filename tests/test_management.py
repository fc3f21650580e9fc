"""The Management API client's failure paths, against a scripted loopback server (no TorchServe).

The happy paths, renewal included, run against a real TorchServe in test_integration.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripted_http import Answer, scripted_server
from toolkit.serve.management import ManagementClient, ManagementError, TokenSession
from toolkit.serve.server import free_port

KEYS = {"management": {"key": "m-key"}, "inference": {"key": "i-key"}, "API": {"key": "api-key"}}
# What TorchServe 0.12 answers for a missing, wrong or expired key.
TOKEN_FAILURE = json.dumps(
    {
        "code": 400,
        "type": "InvalidKeyException",
        "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
    }
).encode()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps(KEYS))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "key_file.json not found: is TorchServe running from"),
        ("", "key_file.json is not a TorchServe key file: Expecting value"),
        ('{"management": {"key": "m', "key_file.json is not a TorchServe key file: Unterminated string"),
        (json.dumps({"management": {"key": "m"}}), "key_file.json is not a TorchServe key file: 'inference'"),
        (json.dumps(dict.fromkeys(KEYS, "flat")), "key_file.json is not a TorchServe key file: string indices"),
        ("[]", "key_file.json is not a TorchServe key file: list indices"),
        ("a folder", "key_file.json cannot be read: "),
    ],
)
def test_bad_key_file_is_a_management_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "key_file.json"
    if content == "a folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with scripted_server([]) as fake:
        with pytest.raises(ManagementError, match=message) as raised:
            ManagementClient(path, fake.url).describe("instructor")
        assert fake.seen == [], "nothing is sent without a key"
    assert raised.value.status == 0


def test_refused_renewal_is_a_management_error_and_tried_once(key_file: Path) -> None:
    script = [Answer(400, TOKEN_FAILURE), Answer(400, TOKEN_FAILURE)]
    with scripted_server(script) as fake, pytest.raises(ManagementError) as raised:
        ManagementClient(key_file, fake.url).describe("instructor")
    assert raised.value.status == 400
    assert raised.value.message == (
        "renewing the management key: Token Authorization failed. Token either incorrect, expired, "
        "or not provided correctly"
    )
    assert [(seen.method, seen.path, seen.authorization) for seen in fake.seen] == [
        ("GET", "/models/instructor", "Bearer m-key"),
        ("POST", "/token?type=management", "Bearer api-key"),
    ]


def test_key_still_refused_after_renewal_is_not_retried_again(key_file: Path) -> None:
    script = [Answer(400, TOKEN_FAILURE), Answer(200, b'{"message": "renewed"}'), Answer(400, TOKEN_FAILURE)]
    with scripted_server(script) as fake, pytest.raises(ManagementError, match="HTTP 400: Token") as raised:
        ManagementClient(key_file, fake.url).describe("instructor")
    assert raised.value.status == 400
    assert [seen.path for seen in fake.seen] == ["/models/instructor", "/token?type=management", "/models/instructor"]


def test_refused_connection_is_a_management_error(key_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ManagementError, match=f"no answer from {url}/models/instructor: is TorchServe running") as e:
        ManagementClient(key_file, url).describe("instructor")
    assert e.value.status == 0


def test_refused_connection_while_renewing_is_a_management_error(key_file: Path) -> None:
    """The inference key expired and the management port (the token endpoint) does not answer."""
    management_url = f"http://127.0.0.1:{free_port()}"
    with scripted_server([Answer(400, TOKEN_FAILURE)]) as inference:
        session = TokenSession(key_file, "inference", management_url, timeout_s=10)
        with pytest.raises(ManagementError, match=f"no answer from {management_url}/token") as raised:
            session.request("GET", f"{inference.url}/ping")
    assert raised.value.status == 0
    assert [(seen.path, seen.authorization) for seen in inference.seen] == [("/ping", "Bearer i-key")]
