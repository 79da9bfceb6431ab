"""Fixture files in the layout of Okapi's release (written by us, tiny), and a loopback HTTP server for them."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def release_tree(root: Path, lang: str = "vi", n: int = 4) -> Path:
    """The files of one language under ``root`` as data/released/ lays them out (URL paths mirror it)."""
    inst = [{"instruction": f"Hướng dẫn {i}", "input": "", "output": f"Đáp {i}"} for i in range(n)]
    inst[-1]["output"] = n  # the release holds some non-string values
    write(root / "multilingual-alpaca-52k" / f"{lang}.json", inst)
    rl = [{**r, "instruction": "RL " + r["instruction"]} for r in inst]
    write(root / "multilingual-rl-tuning-64k" / f"{lang}.json", rl)
    ranking = [
        {"instruction": f"Hỏi {i // 2}", "input": "", "prefered_output": f"tốt {i}", "rejected_output": f"tệ {i}"}
        for i in range(n)
    ]
    write(root / "multilingual-ranking-data-42k" / f"{lang}.json", ranking)
    mc = [
        {"id": f"q{i}", "answer": "B", "instruction": f"Câu {i}?", "option_a": "x", "option_b": "y", "option_c": "z"}
        for i in range(3)
    ]
    for split in ("test", "train"):
        write(root / "okapi-eval" / "m_arc" / f"{lang}_{split}.json", mc)
    for split in ("test", "dev"):
        write(root / "okapi-eval" / "m_mmlu" / f"{lang}_{split}.json", [{**r, "option_d": "w"} for r in mc])
    hs = [
        {
            "ind": i,
            "activity_label": "a",
            "ctx_a": "Một người",
            "ctx_b": "đang",
            "ctx": "Một người đang",
            "endings": ["chạy.", "bơi.", "ngủ.", "ăn."],
            "source_id": "s",
            "split": "val",
            "split_type": "indomain",
            "label": "1",
        }
        for i in range(3)
    ]
    write(root / "okapi-eval" / "m_hellaswag" / f"{lang}_val.json", hs)
    return root


@contextmanager
def serve(root: Path) -> Iterator[ThreadingHTTPServer]:
    """Serve ``root`` over HTTP on 127.0.0.1; yields the server (``base_url`` set on it). Requests are not logged."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
