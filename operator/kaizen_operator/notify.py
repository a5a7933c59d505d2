"""E-mail when an evaluation run ends: SMTP settings from a Secret, STARTTLS whenever the server offers it.

The Secret (`$KAIZEN_SMTP_SECRET`, default `kaizen-smtp`, in the operator's namespace) holds `host`,
optionally `port` (587), `username` and `password` (AUTH only when both are set), `from`, and `tls`:
`starttls` (default: upgrade when offered, refuse to send credentials in clear text), `required`
(fail unless the server offers STARTTLS) or `none`. A send that fails raises NotifyError, a Secret
that cannot be used too (naming the key, never the value); the caller turns it into a condition and
never into the job's outcome.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

SECRET_ENV = "KAIZEN_SMTP_SECRET"
DEFAULT_SECRET = "kaizen-smtp"


class NotifyError(Exception):
    """Why a notification was not sent (for the Notified condition)."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    sender: str = "kaizen@localhost"
    tls: Literal["starttls", "required", "none"] = "starttls"
    timeout_s: float = 10.0


def smtp_settings(secret: Mapping[str, Any] | None) -> SmtpSettings:
    """Settings from a Secret object (its base64 `data`)."""
    if secret is None:
        raise NotifyError("no SMTP settings: the Secret with host, port, from (and credentials) is missing")
    data = {k: _text(k, v) for k, v in (secret.get("data") or {}).items()}
    if not data.get("host"):
        raise NotifyError("the SMTP Secret has no 'host'")
    tls = data.get("tls", "starttls")
    if tls not in ("starttls", "required", "none"):
        raise NotifyError(f"the SMTP Secret's 'tls' must be starttls, required or none, not {tls!r}")
    try:
        port = int(data.get("port", "587"))
    except ValueError:
        raise NotifyError(f"the SMTP Secret's 'port' is not a number: {data['port']!r}") from None
    if not 1 <= port <= 65535:
        raise NotifyError(f"the SMTP Secret's 'port' must be 1 to 65535, not {port}")
    if any(c in data.get("from", "") for c in "\r\n"):  # a header line each: the mail could not be made
        raise NotifyError("the SMTP Secret's 'from' holds a line break")
    for key in ("username", "password"):
        if not data.get(key, "").isascii():  # smtplib's AUTH encodes them as ASCII
            raise NotifyError(f"the SMTP Secret's {key!r} is not ASCII, which SMTP AUTH cannot send")
    return SmtpSettings(
        host=data["host"],
        port=port,
        username=data.get("username") or None,
        password=data.get("password") or None,
        sender=data.get("from") or "kaizen@localhost",
        tls=tls,  # type: ignore[arg-type]
    )


def _text(key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError; the value may be a password: not shown
        raise NotifyError(f"the SMTP Secret's {key!r} is not UTF-8 text") from None


def compose(
    sender: str,
    recipients: list[str],
    *,
    job: str,
    namespace: str,
    run_name: str,
    phase: str,
    reason: str | None,
    results: Mapping[str, float] | None,
    results_uri: str | None,
    message: str | None,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = f"[Kaizen] evaluation {run_name} {phase.lower()}"
    lines = [f"EvalJob {namespace}/{job}, run {run_name}: {phase}" + (f" ({reason})" if reason else ""), ""]
    for metric, value in (results or {}).items():
        lines.append(f"  {metric}: {value:.4f}")
    if results_uri:
        lines += ["", f"Full results: {results_uri}"]
    if message and phase != "Succeeded":
        lines += ["", message[:2000]]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def send(settings: SmtpSettings, mail: EmailMessage) -> None:
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
            smtp.ehlo()
            if settings.tls != "none" and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                secure = True
            else:
                secure = False
            if settings.tls == "required" and not secure:
                raise NotifyError(
                    f"{settings.host}:{settings.port} does not offer STARTTLS and tls is required"
                )
            if settings.username and settings.password:
                if not secure and settings.tls != "none":
                    raise NotifyError(
                        f"{settings.host}:{settings.port} offers no STARTTLS; credentials are not sent "
                        "in clear text (set tls: none to allow it)"
                    )
                smtp.login(settings.username, settings.password)
            smtp.send_message(mail)
    except NotifyError:
        raise
    except UnicodeError:  # e.g. a non-ASCII address; the error text would quote the setting
        raise NotifyError(
            f"cannot send mail through {settings.host}:{settings.port}: a setting is not ASCII"
        ) from None
    except (TimeoutError, OSError, smtplib.SMTPException) as err:
        raise NotifyError(f"cannot send mail through {settings.host}:{settings.port}: {err}") from err
