"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions endpoint, with faults on demand."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAIServer:
    """``responder(messages) -> content``; ``faults`` is consumed one per request: 429, 500, hang, drop, badjson,
    401, 404, empty (a valid body with no content)."""

    def __init__(
        self, responder: Callable[[list[dict[str, Any]]], str], latency_s: float = 0.0, hang_s: float = 5.0
    ) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.faults: list[str] = []
        self.requests: list[dict[str, Any]] = []  # bodies of chat requests answered successfully or not
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                    fault = server.faults.pop(0) if server.faults else None
                if server.latency_s:
                    time.sleep(server.latency_s)
                if fault == "429":
                    self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0.05"})
                elif fault == "500":
                    self._send(500, b'{"error": {"message": "boom"}}')
                elif fault == "401":
                    self._send(401, b'{"error": {"message": "bad key"}}')
                elif fault == "404":
                    self._send(404, b'{"error": {"message": "no such model"}}')
                elif fault == "hang":
                    time.sleep(server.hang_s)
                    self.close_connection = True
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif fault == "badjson":
                    self._send(200, b'{"id": "x", "choices": [ {"message": ')
                else:
                    content = None if fault == "empty" else server.responder(body["messages"])
                    reply = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "m"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                    self._send(200, json.dumps(reply).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def user_texts(self) -> list[str]:
        return [json.dumps(r["messages"], sort_keys=True) for r in self.requests]
