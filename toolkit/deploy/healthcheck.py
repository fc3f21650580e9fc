"""The image's HEALTHCHECK: ``/ping`` with the inference key, so token authorization stays on.

TorchServe refuses even ``/ping`` without the inference key; inside the container the key file
is at ``$WORKDIR/key_file.json``. The inference key expires after 60 minutes, so an expired
key is renewed through the management API (loopback, inside the container) and retried.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import requests

from toolkit.commands import environment_only
from toolkit.deploy.container import ContainerSettings
from toolkit.serve.management import ManagementError, TokenSession


def check(settings: ContainerSettings, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Whether TorchServe answers ``/ping`` as Healthy, and what it said."""
    inference_url, management_url = settings.local_inference_url, settings.local_management_url
    try:
        if settings.token_authorization == "off":
            response = requests.get(f"{inference_url}/ping", timeout=timeout_s)
        else:
            session = TokenSession(settings.workdir / "key_file.json", "inference", management_url, timeout_s)
            response = session.request("GET", f"{inference_url}/ping")
    except (ManagementError, requests.RequestException) as err:
        return False, str(err)
    return response.status_code == 200, response.text.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """The image's HEALTHCHECK: exit 0 when /ping answers 200 with the inference key."""
    environment_only(main.__doc__ or "", argv)
    healthy, message = check(ContainerSettings.from_env(os.environ))
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
