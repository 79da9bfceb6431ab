"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions endpoint, with faults on demand.

It also speaks the Batch API's part that the teacher uses: /files (upload, content) and /batches (create, retrieve).
A batch is answered by the same responder, line by line, once it has been retrieved ``batch_polls`` times.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    # listen() runs in the constructor, so the backlog must be a class attribute: with the default of 5, a burst of
    # concurrent connects overflows the accept queue and the kernel drops SYNs, which cost a 1 s retransmit each.
    request_queue_size = 128
    daemon_threads = True


class JSONHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with quiet logs and one way to answer JSON (this server and benchmarks/paper_scale.py)."""

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


def chat_completion(model: str, content: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    return {
        str(part.get_param("name", header="content-disposition")): part.get_payload(decode=True) or b""
        for part in msg.iter_parts()
    }


class FakeOpenAIServer:
    """``responder(messages) -> content``; ``faults`` is consumed one per request: 429, 500, hang, drop, badjson,
    401, 404, empty (a valid body with no content).

    Batch API: ``batch_item_faults`` is consumed one per batch line: 500, 429 (error file), 400 (error file; the
    teacher treats it as fatal), drop (the line gets no answer, as in an expired batch), empty (no content).
    ``batch_outcomes`` is consumed one per created batch: completed (default), expired, failed, cancelled."""

    def __init__(
        self, responder: Callable[[list[dict[str, Any]]], str], latency_s: float = 0.0, hang_s: float = 5.0
    ) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.faults: list[str] = []
        self.requests: list[dict[str, Any]] = []  # bodies of chat requests answered successfully or not
        self.auth_headers: list[str] = []
        self.chat_calls: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every chat request
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}  # id -> the batch object as last returned
        self.batch_polls = 2  # a batch completes on its batch_polls-th retrieve
        self.batch_item_faults: list[str] = []
        self.batch_outcomes: list[str] = []
        self.batch_lines: list[dict[str, Any]] = []  # bodies of batch lines answered
        self.batch_retrieves: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[-1] == "models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())
                elif len(parts) >= 3 and parts[-3] == "files" and parts[-1] == "content" and parts[-2] in server.files:
                    self._send(200, server.files[parts[-2]], {"Content-Type": "application/octet-stream"})
                elif len(parts) >= 2 and parts[-2] == "batches" and parts[-1] in server.batches:
                    self._send(200, json.dumps(server._poll_batch(parts[-1])).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if len(raw) < length:  # the client went away mid-request (killed): nothing to answer or count
                    self.close_connection = True
                    return
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/files"):
                    form = _multipart(self.headers.get("Content-Type", ""), raw)
                    self._send(200, json.dumps(server._add_file(form["file"], form["purpose"].decode())).encode())
                    return
                if path.endswith("/batches"):
                    req = json.loads(raw)
                    if req.get("input_file_id") not in server.files:
                        self._send(400, b'{"error": {"message": "no such input file"}}')
                        return
                    self._send(200, json.dumps(server._create_batch(req)).encode())
                    return
                body = json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                    server.chat_calls.append((path, {k.lower(): v for k, v in self.headers.items()}))
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
                    self._send(200, json.dumps(chat_completion(body.get("model", "m"), content)).encode())

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval, and every test stops a server.
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- Batch API ------------------------------------------------------------------------------------------------
    def _add_file(self, data: bytes, purpose: str, name: str = "upload.jsonl") -> dict[str, Any]:
        with self._lock:
            file_id = f"file-{next(self._ids)}"
            self.files[file_id] = data
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }

    def _create_batch(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            batch_id = f"batch_{next(self._ids)}"
            outcome = self.batch_outcomes.pop(0) if self.batch_outcomes else "completed"
            lines = self.files[req["input_file_id"]].decode().splitlines()
            batch = {
                "id": batch_id,
                "object": "batch",
                "endpoint": req["endpoint"],
                "input_file_id": req["input_file_id"],
                "completion_window": req["completion_window"],
                "metadata": req.get("metadata"),
                "status": "validating",
                "created_at": int(time.time()),
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "_outcome": outcome,
            }
            self.batches[batch_id] = batch
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _poll_batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            self.batch_retrieves[batch_id] += 1
            batch = self.batches[batch_id]
            if batch["status"] in ("validating", "in_progress"):
                if self.batch_retrieves[batch_id] >= self.batch_polls:
                    self._finish_batch(batch)
                else:
                    batch["status"] = "in_progress"
            return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        outcome = batch["_outcome"]
        if outcome == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_model", "message": "model m is unknown"}]}
            return
        out: list[str] = []
        err: list[str] = []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            req = json.loads(line)
            fault = self.batch_item_faults.pop(0) if self.batch_item_faults else None
            if fault == "drop":
                continue
            rec: dict[str, Any] = {"id": f"batch_req_{next(self._ids)}", "custom_id": req["custom_id"], "error": None}
            if fault in ("500", "429", "400"):
                body = {"error": {"message": f"item fault {fault}", "type": "server_error"}}
                rec["response"] = {"status_code": int(fault), "request_id": "r", "body": body}
                err.append(json.dumps(rec))
                continue
            self.batch_lines.append(req["body"])
            content = None if fault == "empty" else self.responder(req["body"]["messages"])
            rec["response"] = {"status_code": 200, "request_id": "r", "body": chat_completion("m", content)}
            out.append(json.dumps(rec))
        batch["status"] = outcome
        batch["request_counts"].update(completed=len(out), failed=len(err))
        for lines, field in ((out, "output_file_id"), (err, "error_file_id")):
            if lines:
                file_id = f"file-{next(self._ids)}"
                self.files[file_id] = ("\n".join(lines) + "\n").encode()
                batch[field] = file_id

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def user_texts(self) -> list[str]:
        return [json.dumps(r["messages"], sort_keys=True) for r in self.requests]


def answer_ok(messages: list[dict[str, Any]]) -> str:
    return "ok"


def _serve_in_child(conn: Any, responder: Callable[[list[dict[str, Any]]], str], latency_s: float) -> None:
    with FakeOpenAIServer(responder, latency_s=latency_s) as srv:
        conn.send(srv.base_url)
        for _ in iter(conn.recv, "stop"):  # any other message asks for the number of chat requests seen
            conn.send(len(srv.requests))


class ServerProcess:
    """A FakeOpenAIServer in a child process, so a client measured against it does not share its GIL.

    ``responder`` must be picklable (a module-level function)."""

    def __init__(self, responder: Callable[[list[dict[str, Any]]], str] = answer_ok, latency_s: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_in_child, args=(child, responder, latency_s), daemon=True)
        self.base_url = ""

    def __enter__(self) -> ServerProcess:
        self._proc.start()
        self.base_url = self._conn.recv()
        return self

    def request_count(self) -> int:
        self._conn.send("count")
        return int(self._conn.recv())

    def __exit__(self, *exc: Any) -> None:
        self._conn.send("stop")
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
