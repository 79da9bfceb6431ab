"""Test doubles. The product has no fake teacher: stages always talk to a real OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from okapi.teacher import ChatRequest, Outcome, ParseError


class FakeTeacher:
    """Same ``run`` contract as okapi.teacher.Teacher, answering from ``responder(messages, attempt) -> text``.

    Records every request in ``calls`` (messages, attempt) so tests can assert on prompts.
    """

    def __init__(self, responder: Callable[[list[dict[str, str]], int], str], max_attempts: int = 3) -> None:
        self.responder = responder
        self.max_attempts = max_attempts
        self.calls: list[tuple[list[dict[str, str]], int]] = []

    def run(
        self,
        requests: Iterable[ChatRequest],
        parse: Callable[[str], Any],
        *,
        desc: str = "teacher",
        max_attempts: int | None = None,
        total: int | None = None,
    ) -> list[Outcome]:
        out = []
        for req in requests:
            attempts = max_attempts or self.max_attempts
            reason, text = None, None
            for attempt in range(attempts):
                self.calls.append((req.messages, attempt))
                text = self.responder(req.messages, attempt)
                try:
                    value = parse(text)
                except ParseError as err:
                    reason = str(err)
                    continue
                out.append(Outcome(req.key, value, text, None, attempt + 1))
                break
            else:
                out.append(Outcome(req.key, None, text, reason, attempts))
        return out

    def account(self) -> dict[str, Any]:
        return {"requests_sent": len(self.calls), "cache_hits": 0}


def toy_pairs(n: int) -> list[dict]:
    """Preference pairs a tiny reward model can learn: the chosen answer is fixed text, the rejected one gibberish."""
    return [
        {
            "id": f"p{i}",
            "lang": "vi",
            "instruction": f"Give three tips number {i}.",
            "input": "",
            "chosen": "Eat well, sleep, exercise.",
            "rejected": f"{'xq' * (i % 3 + 1)} ###",
        }
        for i in range(n)
    ]


def distinct_tasks_answer(n: int, count: int = 4) -> str:
    """A generation answer (GENERATION_SCHEMA's JSON) of ``count`` tasks that the ROUGE-L filter keeps apart: each
    instruction is made of words no other call ``n`` or task uses."""
    import json

    tasks = [
        {
            "instruction": "Describe " + " ".join(f"w{n}x{i}y{k}" for k in range(6)) + " briefly.",
            "input": "",
            "output": f"It matters because of reason {i}.",
        }
        for i in range(count)
    ]
    return json.dumps({"tasks": tasks})
