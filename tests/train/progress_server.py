"""A tiny HTTP server standing in for the operator's progress endpoint: it records every POST."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorder:
    url: str
    reports: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # the status each POST got
    # Called with each report as it arrives (e.g. to look at the output store at that moment).
    on_report: Callable[[dict[str, Any]], None] | None = None


@contextmanager
def progress_server(status: int = 200, rate_limited_first: int = 0) -> Iterator[Recorder]:
    """``rate_limited_first``: that many POSTs are answered 429 first, as the operator's rate limit does."""
    recorder = Recorder(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.authorizations.append(self.headers.get("Authorization"))
            report = json.loads(body)
            if recorder.on_report is not None:
                recorder.on_report(report)
            recorder.reports.append(report)
            recorder.answers.append(429 if len(recorder.answers) < rate_limited_first else status)
            self.send_response(recorder.answers[-1])
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/runs/progress"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
