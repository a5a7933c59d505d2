"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, for the notification tests
against the control plane; `smtp_secret` is the operator's SMTP settings Secret pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kaizen_local.processes import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    """The inbox and the port, for one test module."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def smtp_secret(port: int) -> dict[str, Any]:
    """The `kaizen-smtp` Secret the operator reads its settings from, for the server on `port`."""
    data = {"host": "127.0.0.1", "port": str(port), "from": "kaizen@example.com"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kaizen-smtp"}, "stringData": data}
