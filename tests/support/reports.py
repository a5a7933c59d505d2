"""Progress reports sent to the operator's endpoint the way a runner sends them (a bearer token, JSON)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def send_report(url: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Status and JSON answer of a report, sent as Python's json writes it (NaN and Infinity too)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read().decode()  # JSON from the handler; aiohttp's own refusals (413) are text
        return int(err.code), json.loads(text) if text.startswith("{") else {"error": text}
