"""E-mail notification against a real SMTP server on 127.0.0.1 (aiosmtpd), and an unreachable one."""

from __future__ import annotations

import base64
import socket

import pytest
from aiosmtpd.controller import Controller
from kaizen_operator.notify import NotifyError, SmtpSettings, compose, send, smtp_settings


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _mail(sender: str = "kaizen@example.com"):
    return compose(
        sender,
        ["ml-team@example.com", "lead@example.com"],
        job="support-standard",
        namespace="team-a",
        run_name="testj_1-2",
        phase="Succeeded",
        reason="Completed",
        results={"rougeL": 0.41234, "bleu": 0.2},
        results_uri="s3://kaizen-data/eval/testj_1-2",
        message=None,
    )


def test_the_server_receives_the_notification(smtp_server):
    inbox, port = smtp_server
    send(SmtpSettings(host="127.0.0.1", port=port, sender="kaizen@example.com"), _mail())
    [(recipients, body)] = inbox.messages
    assert recipients == ["ml-team@example.com", "lead@example.com"]
    assert "Subject: [Kaizen] evaluation testj_1-2 succeeded" in body
    assert "rougeL: 0.4123" in body and "s3://kaizen-data/eval/testj_1-2" in body


def test_credentials_are_not_sent_without_starttls(smtp_server):
    inbox, port = smtp_server
    settings = SmtpSettings(host="127.0.0.1", port=port, username="u", password="p")
    with pytest.raises(NotifyError, match="offers no STARTTLS; credentials are not sent"):
        send(settings, _mail())
    with pytest.raises(NotifyError, match="does not offer STARTTLS and tls is required"):
        send(SmtpSettings(host="127.0.0.1", port=port, tls="required"), _mail())
    assert inbox.messages == []


def test_an_unreachable_server_is_a_notify_error():
    port = free_port()  # nobody listens there
    with pytest.raises(NotifyError, match=f"cannot send mail through 127.0.0.1:{port}"):
        send(SmtpSettings(host="127.0.0.1", port=port, timeout_s=2), _mail())


def test_settings_come_from_the_secret():
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret = {"data": {"host": b64("smtp.example.com"), "port": b64("2525"), "from": b64("k@example.com")}}
    settings = smtp_settings(secret)
    assert (settings.host, settings.port, settings.sender, settings.tls) == (
        "smtp.example.com",
        2525,
        "k@example.com",
        "starttls",
    )
    with pytest.raises(NotifyError, match="Secret with host"):
        smtp_settings(None)
    with pytest.raises(NotifyError, match="'port' is not a number"):
        smtp_settings({"data": {"host": b64("h"), "port": b64("x")}})


class _Kube:
    """Just enough of kaizen_operator.kube.Kube: the SMTP Secret by path."""

    def __init__(self, secret: dict) -> None:
        self.secret = secret

    def get(self, path: str) -> dict | None:
        return self.secret if path.endswith("/secrets/kaizen-smtp") else None


def _outcome(port: int) -> tuple[str, str, str]:
    from types import SimpleNamespace

    from api.manifests import load_example
    from kaizen_api.evaljob import EvalJobSpec, EvalRunRecord
    from kaizen_operator.eval_reconciler import _notify

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    job = load_example("evaljob-standard.yaml")
    job["metadata"]["namespace"] = "team-a"
    secret = {"data": {"host": b64("127.0.0.1"), "port": b64(str(port)), "from": b64("k@example.com")}}
    ctx = SimpleNamespace(kube=_Kube(secret))
    run = EvalRunRecord(run_name="testj_20250919145022-1", phase="Failed", reason="DataNotStaged")
    return _notify(ctx, job, EvalJobSpec.model_validate(job["spec"]), run, "winogrande is not staged")  # type: ignore[arg-type]


def test_the_notified_condition_says_whether_mail_went_out(smtp_server):
    inbox, port = smtp_server
    assert _outcome(port)[:2] == ("True", "Sent")
    body = inbox.messages[0][1]
    assert "Subject: [Kaizen] evaluation testj_20250919145022-1 failed" in body
    assert "winogrande is not staged" in body
    status, reason, message = _outcome(free_port())  # nobody listens: a condition, not an exception
    assert (status, reason) == ("False", "SendFailed") and "cannot send mail through 127.0.0.1" in message


def test_a_secret_that_cannot_be_used_is_a_notify_error_naming_the_key_not_the_value():
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    latin1 = {"data": {"host": b64(b"h"), "password": b64("pässwort".encode("latin-1"))}}
    with pytest.raises(NotifyError, match="'password' is not UTF-8 text") as err:
        smtp_settings(latin1)
    assert "wort" not in str(err.value)
    non_ascii = {"data": {"host": b64(b"h"), "username": b64(b"u"), "password": b64("pässwort".encode())}}
    with pytest.raises(NotifyError, match="'password' is not ASCII") as err:
        smtp_settings(non_ascii)
    assert "pä" not in str(err.value)


def test_a_non_ascii_password_at_login_is_a_notify_error():
    """smtplib encodes AUTH credentials as ASCII; the UnicodeEncodeError must not escape the pass."""
    from aiosmtpd.smtp import AuthResult

    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        authenticator=lambda *_: AuthResult(success=True),
    )
    controller.start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=port, username="u", password="pässwort", tls="none")
        with pytest.raises(NotifyError, match="a setting is not ASCII") as err:
            send(settings, _mail())
        assert "pä" not in str(err.value) and inbox.messages == []
        send(SmtpSettings(host="127.0.0.1", port=port, username="u", password="p", tls="none"), _mail())
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_a_from_with_a_line_break_or_a_port_out_of_range_is_a_notify_error_naming_the_key():
    """A `from` with a line break made composing the mail raise ValueError: the pass failed after its
    claim, and the next one reported the mail as unconfirmed instead of the setting at fault."""

    def secret(**data: str) -> dict:
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    with pytest.raises(NotifyError, match="'from' holds a line break"):
        smtp_settings(secret(host="h", **{"from": "k@example.com\r\nBcc: all@example.com"}))
    for port in ("0", "70000", "-1"):
        with pytest.raises(NotifyError, match=f"'port' must be 1 to 65535, not {port}"):
            smtp_settings(secret(host="h", port=port))
