"""An OpenAI-compatible chat-completions server on 127.0.0.1 that answers through a function of the
request's messages and records every request (the GPU-free stand-in for a vLLM endpoint)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[list[dict[str, Any]]], str]


@dataclass
class FakeEndpoint:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def openai_server(answer: Answer) -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint(base_url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen = {"path": self.path, "auth": self.headers.get("Authorization"), **body}
            with lock:
                endpoint.requests.append(seen)
            content = answer(body["messages"])
            reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


def endpoint_model(endpoint: FakeEndpoint, **extra: Any) -> dict[str, Any]:
    """A run configuration's model block for the fake endpoint (an instruction-tuned text model)."""
    spec = {"baseUrl": endpoint.base_url, "model": "served", **extra}
    return {"name": "served", "endpoint": spec, "modality": "text", "instructionTuned": True}
