"""Self-Instruct generation: seeds, prompt, parsers, filters and the generation loop with a fake teacher."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fakes import FakeTeacher
from tiny import small_config

from okapi import schemas
from okapi.config import ConfigError
from okapi.io import DataError, read_rows, write_parquet
from okapi.selfinstruct import (
    GENERATION_SCHEMA,
    GenerateConfig,
    build_prompt,
    filter_reason,
    generate,
    load_pool,
    load_seeds,
    parse_json_response,
    parse_response,
)

SEEDS_PATH = Path(__file__).resolve().parents[2] / "data" / "seeds" / "seed_tasks.jsonl"

GOOD = [
    "Describe the water cycle in three sentences for a school newsletter.",
    "Suggest five names for a bakery that specializes in sourdough bread.",
    "Explain why leaves change color in autumn to a curious teenager.",
    "Classify each animal in the list as a mammal, bird, reptile or fish.",
    "Rewrite the sentence in the passive voice without changing its tense.",
    "Extract the date, the venue and the organizer of the concert announcement.",
    "Compose a haiku that captures the feeling of the first snowfall.",
    "Calculate the compound interest on a deposit over five years.",
    "Identify the main argument of the op-ed and one piece of supporting evidence.",
    "Propose three icebreaker questions for a remote team meeting on Monday.",
    "Determine whether the two sentences contradict each other, entail each other, or are neutral.",
    "Summarize the plot of the short story in no more than fifty words.",
    "Generate a packing checklist for a week-long business trip to Singapore.",
    "Convert the temperatures from Fahrenheit to Celsius and round to one decimal.",
    "List the steps needed to change a flat tire on a bicycle.",
    "Compare electric kettles and stovetop kettles in terms of speed and cost.",
]


def numbered(tasks: list[dict[str, str]], first: int, terminate_last: bool = True) -> str:
    blocks = []
    for i, t in enumerate(tasks, start=first):
        blocks.append(f"{i}. Instruction: {t['instruction']}\n{i}. Input:\n{t['input'] or '<noinput>'}\n")
        blocks.append(f"{i}. Output:\n{t['output']}\n###\n")
    text = "".join(blocks)
    return text if terminate_last else text.rstrip("#\n") + "\n"


def task(instruction: str, inp: str = "", output: str = "A short answer.") -> dict[str, str]:
    return {"instruction": instruction, "input": inp, "output": output}


# -- seeds ---------------------------------------------------------------------------------------------------------
def test_seed_file_is_valid_and_covers_okapi_categories():
    seeds = load_seeds(SEEDS_PATH)
    assert len(seeds) >= 50
    assert [s["id"] for s in seeds] == [f"seed_task_{i}" for i in range(len(seeds))]
    names = " ".join(s["name"] for s in seeds)
    for category in ("relation_extraction", "event_extraction", "event_summary", "logic_"):
        assert names.count(category) >= 7, category
    for s in seeds:
        for inst in s["instances"]:
            assert len(inst["output"].split()) < 100
        assert filter_reason(s["instruction"]) is None, s["instruction"]
    assert len({s["instruction"] for s in seeds}) == len(seeds)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "s1", "name": "n", "instances": [{"input": "", "output": "o"}]}', "line 2: field 'instruction'"),
        ('{"id": "s1", "name": "n", "instruction": "i", "instances": []}', "line 2: field 'instances'"),
        ('{"id": "s1", "name": "n", "instruction": "i", "instances": [{"output": "o"}]}', "instances[0].input"),
        ("not json", "line 2: not valid JSON"),
    ],
)
def test_load_seeds_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "seeds.jsonl"
    good = '{"id": "s0", "name": "n", "instruction": "Say hi to me.", "instances": [{"input": "", "output": "Hi"}]}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        load_seeds(path)
    assert str(path) in str(err.value) and message in str(err.value)


# -- prompt --------------------------------------------------------------------------------------------------------
def test_prompt_states_alpacas_requirements_and_numbers_the_examples():
    examples = [
        task("Give three tips for staying healthy.", "", "Eat well, sleep, move."),
        task("Fix the grammar.", "He go home.", "He goes home."),
    ]
    prompt = build_prompt(examples, 20)
    low = prompt.lower()
    assert "20 diverse task instructions" in prompt
    for phrase in ("verb", "diverse", "text", "images", "english", "one or two sentences", "<noinput>", "100 words"):
        assert phrase in low, phrase
    assert "1. Instruction: Give three tips for staying healthy.\n1. Input:\n<noinput>\n1. Output:\nEat well" in prompt
    assert "2. Instruction: Fix the grammar.\n2. Input:\nHe go home.\n2. Output:\nHe goes home.\n###" in prompt
    assert "tasks 3 to 20" in prompt
    structured = build_prompt(examples, 10, structured=True)
    assert '"tasks"' in structured and "tasks 3 to 10" in structured and "JSON" in structured
    with pytest.raises(ValueError):
        build_prompt(examples * 10, 20)


# -- parsers -------------------------------------------------------------------------------------------------------
def test_parse_response_reads_blocks_and_drops_the_truncated_last_one():
    tasks = [task(GOOD[0]), task(GOOD[1], "Flour, water, salt."), task(GOOD[2])]
    assert parse_response(numbered(tasks, 4)) == tasks
    # The answer was cut inside the last block: no closing ### -> dropped.
    assert parse_response(numbered(tasks, 4, terminate_last=False)) == tasks[:2]
    cut = numbered(tasks, 4) + "7. Instruction: Describe a sunset.\n7. Input:\n<noinput>\n7. Output:\nThe sky tur"
    assert parse_response(cut) == tasks


def test_parse_response_skips_malformed_blocks():
    text = (
        "4. Instruction: Name a river in Africa.\n4. Output:\nThe Nile.\n###\n"  # no input field
        "5. Instruction: Describe the taste of a lemon to someone who never had one.\n5. Input:\n<noinput>\n"
        "6. Output:\nSour.\n###\n"  # numbers disagree
        "7. Instruction: Recommend a board game for four players.\n7. Input:\n<noinput>\n7. Output:\n\n###\n"
        "8. Instruction: Give an antonym of the word.\n8. Input:\nancient\n8. Output:\nmodern\n###\n"
    )
    assert parse_response(text) == [task("Give an antonym of the word.", "ancient", "modern")]
    assert parse_response("Sorry, I cannot help with that.") == []
    assert parse_response("") == []


def test_parse_json_response():
    good = {"tasks": [task(GOOD[0], "<noinput>"), task(GOOD[1], "Rye flour.")]}
    assert parse_json_response(json.dumps(good)) == [task(GOOD[0]), task(GOOD[1], "Rye flour.")]
    assert parse_json_response("```json\n" + json.dumps(good) + "\n```")[0]["instruction"] == GOOD[0]
    partial = {"tasks": [{"instruction": GOOD[2], "output": 3}, {"input": "x"}, task(GOOD[3]), "junk"]}
    assert parse_json_response(json.dumps(partial)) == [task(GOOD[3])]
    assert parse_json_response('{"tasks": [') == []
    assert parse_json_response("[1, 2]") == []
    assert GENERATION_SCHEMA["properties"]["tasks"]["items"]["required"] == ["instruction", "input", "output"]


@pytest.mark.parametrize(
    ("instruction", "reason"),
    [
        ("Say hello now.", "too_short"),
        ("word " * 151, "too_long"),
        ("Draw a cat sitting on a windowsill.", "blacklisted_word"),
        ("Describe the IMAGE shown above in detail.", "blacklisted_word"),
        ("Tell me how to go to the station.", "blacklisted_word"),
        ("Write a program that prints the first ten primes.", "write_a_program"),
        ('"Quoted" instructions are not allowed here.', "starts_with_punctuation"),
        ("Él explica la diferencia entre dos palabras.", "non_ascii_start"),
        ("Summarize the mapping between the two tables.", None),  # "map" only as a whole word
        ("Describe a typical morning routine for a nurse.", None),
    ],
)
def test_filter_reasons(instruction, reason):
    assert filter_reason(instruction.strip()) == reason


# -- the loop ------------------------------------------------------------------------------------------------------
def hashed_responder(structured: bool = False):
    """A deterministic fake teacher: the tasks depend only on the prompt, like a cached teacher."""

    def respond(messages, attempt):
        prompt = messages[0]["content"]
        first = int(re.search(r"tasks (\d+) to", prompt).group(1))
        rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
        picked = [task(t, "" if i % 2 else "Some input text.") for i, t in enumerate(rng.sample(GOOD, 3))]
        picked.append(task("Draw a map of your town."))
        if structured:
            return json.dumps({"tasks": picked})
        return numbered(picked, first)

    return respond


def small_cfg(**kw) -> GenerateConfig:
    base = dict(num_instructions=6, request_batch_size=2, max_rounds=8, structured=False, num_tasks=8)
    return small_config(GenerateConfig, **{**base, **kw})


def test_generate_reaches_the_target_with_schema_rows_and_stable_ids(tmp_path):
    seeds = load_seeds(SEEDS_PATH)
    pool = [task("Write a limerick about a cat.", "", "There once was a cat...")]
    teacher = FakeTeacher(hashed_responder())
    rows, metrics = generate(teacher, seeds, pool, small_cfg())
    gen = [r for r in rows if r["source"] == "generated"]
    assert [r["id"] for r in gen] == [f"gen-{i:05d}" for i in range(6)]
    assert rows[0]["id"] == "seed-0" and rows[len(seeds)]["id"] == "pool-0"
    assert sum(r["source"] == "seed" for r in rows) == len(seeds)
    assert all(r["max_similarity"] <= 0.7 for r in gen)
    assert all(0 <= r["avg_similarity"] <= r["max_similarity"] for r in gen)
    assert all(len(r["most_similar_instructions"]) == 10 for r in gen)
    assert all(r["max_similarity"] is None for r in rows if r["source"] != "generated")
    assert metrics["kept"] == 6 and metrics["reached_target"]
    assert metrics["rejected_by_reason"]["blacklisted_word"] >= 1
    assert metrics["parsed"] == metrics["kept"] + sum(metrics["rejected_by_reason"].values())
    assert metrics["requests"] == len(teacher.calls)
    # Every prompt shows num_prompt_instructions seed examples and asks for the rest of the list.
    first_prompt = teacher.calls[0][0][0]["content"]
    assert "3. Output:" in first_prompt and "4. Instruction" not in first_prompt and "tasks 4 to 8" in first_prompt
    path = tmp_path / "instructions.parquet"
    write_parquet(rows, path, schemas.INSTRUCTIONS)
    assert read_rows(path, schemas.INSTRUCTIONS) == rows


def test_generate_is_deterministic_for_a_seed():
    seeds = load_seeds(SEEDS_PATH)
    runs = []
    for _ in range(2):
        teacher = FakeTeacher(hashed_responder(structured=True))
        rows, metrics = generate(teacher, seeds, [], small_cfg(structured=True))
        runs.append((rows, metrics, [m for m, _ in teacher.calls]))
    assert runs[0] == runs[1]
    other = FakeTeacher(hashed_responder(structured=True))
    generate(other, seeds, [], small_cfg(structured=True, seed=7))
    assert [m for m, _ in other.calls] != runs[0][2]


def test_generate_counts_every_rejection_reason_and_checks_the_pool():
    seeds = load_seeds(SEEDS_PATH)
    pool = [task("Explain the difference between weather and climate to a child.")]
    answer = [
        task(GOOD[0]),
        task("Draw a picture of a lighthouse at night."),
        task("Say hi."),
        task("Write a program that sorts a list of names."),
        task("(Optional) describe your favourite holiday memory."),
        task("Écris un poème sur la mer et le vent."),
        task(seeds[5]["instruction"]),  # repeats a seed
        task("Explain the difference between weather and climate to children."),  # near copy of the pool (Okapi)
        task(GOOD[0]),  # repeats a task kept just before
        task(GOOD[1]),
        task(GOOD[2]),  # never looked at: the target is reached
    ]
    teacher = FakeTeacher(lambda messages, attempt: numbered(answer, 4))
    rows, metrics = generate(teacher, seeds, pool, small_cfg(num_instructions=2, num_tasks=15))
    assert [r["instruction"] for r in rows if r["source"] == "generated"] == [GOOD[0], GOOD[1]]
    assert metrics["rejected_by_reason"] == {
        "blacklisted_word": 1,
        "too_short": 1,
        "too_long": 0,
        "write_a_program": 1,
        "starts_with_punctuation": 1,
        "non_ascii_start": 1,
        "rouge_similar": 3,
    }
    assert metrics["parsed"] == 10 and metrics["requests"] == 2 and metrics["rounds"] == 1


def test_generate_counts_unusable_answers_and_stops_after_max_rounds():
    seeds = load_seeds(SEEDS_PATH)
    teacher = FakeTeacher(lambda messages, attempt: "I am not able to do that.", max_attempts=2)
    rows, metrics = generate(teacher, seeds, [], small_cfg(max_rounds=2))
    assert metrics["answers_rejected"] == 4 and metrics["kept"] == 0 and not metrics["reached_target"]
    assert len(teacher.calls) == 8  # 2 rounds x 2 requests x 2 attempts
    assert len(rows) == len(seeds)


def test_generate_config_ranges():
    with pytest.raises(ConfigError, match="generate.num_tasks"):
        small_config(GenerateConfig, num_tasks=3, num_prompt_instructions=3)
    with pytest.raises(ConfigError, match="generate.rouge_threshold"):
        small_config(GenerateConfig, rouge_threshold=0)
    with pytest.raises(DataError, match="num_prompt_instructions"):
        generate(FakeTeacher(lambda m, a: ""), load_seeds(SEEDS_PATH)[:2], [], small_config(GenerateConfig))


# -- pool ----------------------------------------------------------------------------------------------------------
def test_load_pool_from_local_files(tmp_path):
    records = [task(f"Instruction number {i} for the pool.", "", f"out {i}") for i in range(5)]
    (tmp_path / "p.json").write_text(json.dumps(records))
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "p.parquet")
    for name in ("p.json", "p.jsonl", "p.parquet"):
        assert load_pool(str(tmp_path / name)) == records
    assert load_pool(str(tmp_path / "p.json"), limit=2) == records[:2]
    assert load_pool(None) == []
    no_input = [{"instruction": "Name a color.", "output": "Blue"}]
    (tmp_path / "q.json").write_text(json.dumps(no_input))
    assert load_pool(str(tmp_path / "q.json")) == [task("Name a color.", "", "Blue")]


def test_load_pool_errors_name_file_record_and_field(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([task("Fine instruction here."), {"instruction": "x", "output": 1}]))
    with pytest.raises(DataError, match=r"bad\.json, record 2: field 'output' must be a string"):
        load_pool(str(tmp_path / "bad.json"))
    with pytest.raises(DataError, match="file not found"):
        load_pool(str(tmp_path / "missing.json"))


def test_load_pool_hub_id_goes_through_datasets(monkeypatch):
    calls = []

    class FakeDataset(list):
        def select(self, indices):
            return FakeDataset(self[i] for i in indices)

    def load_dataset(name, split):
        calls.append((name, split))
        if name == "nobody/missing":
            raise ConnectionError("Couldn't reach 'nobody/missing' on the Hub (OfflineModeIsEnabled)")
        return FakeDataset([task("Give me a fun fact about owls.", "", "Owls can rotate their heads.")] * 3)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert len(load_pool("tatsu-lab/alpaca", limit=2)) == 2
    assert calls == [("tatsu-lab/alpaca", "train")]
    with pytest.raises(DataError, match="cannot load this datasets hub id"):
        load_pool("nobody/missing")
