"""Onboard a fresh Home Assistant through its REST API (stdlib only).

Used by scripts/develop (creates the development user on first start) and by the
end-to-end tests. Usage: python scripts/ha_onboard.py URL USERNAME PASSWORD
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any
import urllib.error
import urllib.parse
import urllib.request


def _request(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> Any:
    headers: dict[str, str] = {}
    data: bytes | None = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def wait_until_up(base_url: str, timeout: float = 120.0) -> None:
    """Wait until Home Assistant's HTTP server answers (any status will do)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _request("GET", f"{base_url}/auth/providers", timeout=5)
        except urllib.error.HTTPError:
            return  # 400 before onboarding: it is up
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
        else:
            return


def is_onboarded(base_url: str) -> bool:
    """Return True when every onboarding step is done."""
    try:
        steps = _request("GET", f"{base_url}/api/onboarding")
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return True  # started after onboarding: the onboarding API is gone
        raise
    return all(step["done"] for step in steps)


def onboard(
    base_url: str, username: str, password: str, name: str = "Developer"
) -> dict[str, Any]:
    """Run every onboarding step and return the token response of /auth/token."""
    client_id = f"{base_url}/"
    user = _request(
        "POST",
        f"{base_url}/api/onboarding/users",
        json_body={
            "client_id": client_id,
            "name": name,
            "username": username,
            "password": password,
            "language": "en",
        },
    )
    tokens: dict[str, Any] = _request(
        "POST",
        f"{base_url}/auth/token",
        form={
            "grant_type": "authorization_code",
            "code": user["auth_code"],
            "client_id": client_id,
        },
    )
    access = tokens["access_token"]
    _request("POST", f"{base_url}/api/onboarding/core_config", token=access)
    _request("POST", f"{base_url}/api/onboarding/analytics", token=access)
    _request(
        "POST",
        f"{base_url}/api/onboarding/integration",
        json_body={
            "client_id": client_id,
            "redirect_uri": f"{client_id}?auth_callback=1",
        },
        token=access,
    )
    _remove_online_integrations(base_url, access)
    return tokens


# Set up by onboarding's core_config step; they need the internet (and packages
# that --skip-pip does not install), so offline they only show "Failed to set up".
ONLINE_INTEGRATIONS = ("google_translate", "met", "radio_browser")


def _remove_online_integrations(base_url: str, token: str, wait: float = 3.0) -> None:
    """Delete the config entries onboarding created for online integrations."""
    deadline = time.monotonic() + wait
    while True:
        entries = _request(
            "GET", f"{base_url}/api/config/config_entries/entry", token=token
        )
        found = [e for e in entries if e["domain"] in ONLINE_INTEGRATIONS]
        for entry in found:
            _request(
                "DELETE",
                f"{base_url}/api/config/config_entries/entry/{entry['entry_id']}",
                token=token,
            )
        if found or time.monotonic() > deadline:
            return
        time.sleep(0.3)


def refresh(base_url: str, refresh_token: str) -> dict[str, Any]:
    """Return a new access token for a refresh token (POST /auth/token)."""
    tokens: dict[str, Any] = _request(
        "POST",
        f"{base_url}/auth/token",
        form={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": f"{base_url}/",
        },
    )
    return tokens


def main() -> int:
    """Onboard the Home Assistant at argv[1] unless it is onboarded already."""
    base_url, username, password = sys.argv[1:4]
    wait_until_up(base_url)
    if is_onboarded(base_url):
        return 0
    onboard(base_url, username, password)
    print(f"Onboarded {base_url}: user {username!r} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
