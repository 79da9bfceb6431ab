"""okapi.evaluate: our generated lm-eval tasks score exactly like lm-eval's own okapi tasks on the same local data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from okapi import schemas
from okapi.config import ConfigError, from_dict
from okapi.evaluate import (
    EvalConfig,
    evaluate_model,
    evaluate_models,
    load_benchmark_file,
    load_lm,
    main,
    run_task,
    write_task_yaml,
)
from okapi.io import DataError, read_jsonl, write_parquet
from okapi.protocols import arc_doc, mmlu_doc
from okapi.schemas import MULTIPLE_CHOICE

# Records written for these tests: 3- and 5-option ARC items, WikiHow-style [tags], stray whitespace, an empty
# and a capitalised ctx_b, so every branch of the okapi preprocessing is exercised.
ARC = [
    {
        "id": "a1",
        "answer": "B",
        "instruction": " Which gas do plants absorb? ",
        "option_a": "oxygen",
        "option_b": "carbon dioxide",
        "option_c": "helium",
        "option_d": "neon",
        "option_e": None,
    },
    {
        "id": "a2",
        "answer": "C",
        "instruction": "Pick the [step] liquid.",
        "option_a": "ice",
        "option_b": "steam",
        "option_c": "water",
        "option_d": None,
        "option_e": None,
    },
    {
        "id": "a3",
        "answer": "E",
        "instruction": "Which one is a planet?",
        "option_a": "Sun",
        "option_b": "Moon",
        "option_c": "Sirius",
        "option_d": "Vega",
        "option_e": "Mars",
    },
    {
        "id": "a4",
        "answer": "A",
        "instruction": "What melts ice?",
        "option_a": " heat [title]",
        "option_b": "cold",
        "option_c": "dark",
        "option_d": "wind",
        "option_e": None,
    },
    {
        "id": "a5",
        "answer": "D",
        "instruction": "Which is a mammal?",
        "option_a": "shark",
        "option_b": "trout",
        "option_c": "frog",
        "option_d": "whale",
        "option_e": None,
    },
]
MMLU = [
    {
        "id": f"m{i}",
        "answer": "ABCD"[i % 4],
        "instruction": f" Question number {i}: what is {i} + {i}? ",
        "option_a": str(2 * i),
        "option_b": str(2 * i + 1),
        "option_c": str(i),
        "option_d": "none",
        "option_e": None,
    }
    for i in range(5)
]
HELLASWAG = [
    {
        "ind": 10 + i,
        "activity_label": label,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": endings,
        "source_id": f"s{i}",
        "split": "val",
        "split_type": "indomain",
        "label": gold,
    }
    for i, (label, ctx_a, ctx_b, endings, gold) in enumerate(
        [
            ("Making tea", "A man boils water.", "he", ["pours it.", "eats it.", "paints it.", "sells it."], "0"),
            ("Cooking [title] Fry eggs", "A cook cracks eggs.", "", ["fries them.", "A", "B", "C"], "0"),
            ("Biking", "A girl sits on a bike.", "SHE THEN", ["sleeps.", "rides off.", "sings.", "hops."], "1"),
            ("Washing", "A boy wets a car.", "the boy", ["flies.", "swims.", "scrubs it.", "naps."], " 2"),
        ]
    )
]
DATA = {"arc": ARC, "mmlu": MMLU, "hellaswag": HELLASWAG}
SCHEMA = schemas.BENCHMARK_SCHEMA
# lm-eval's own okapi task per benchmark: (folder, base YAML, one language's YAML, the split the task scores).
OKAPI = {
    "arc": ("arc_multilingual", "_arc_yaml", "arc_vi.yaml", "test"),
    "mmlu": ("mmlu_multilingual", "_default_yaml", "m_mmlu_vi.yaml", "test"),
    "hellaswag": ("hellaswag_multilingual", "_hellaswag_yaml", "hellaswag_vi.yaml", "validation"),
}


def write_data(folder: Path, records: dict[str, list[dict]] = DATA) -> Path:
    for benchmark, rows in records.items():
        write_parquet(rows, folder / f"{benchmark}.parquet", SCHEMA[benchmark])
    return folder


def reference_task(task_dir: Path, benchmark: str, data_file: Path, train_file: Path | None = None) -> str:
    """lm-eval's installed okapi task YAML, copied with only its dataset pointed at a local Parquet file."""
    import lm_eval.tasks

    folder, base, lang_yaml, split = OKAPI[benchmark]
    src = Path(lm_eval.tasks.__file__).parent / "okapi" / folder
    task_dir.mkdir(parents=True, exist_ok=True)
    for name in (base, "utils.py"):
        if (src / name).is_file():
            shutil.copy(src / name, task_dir / name)
    config = yaml.safe_load((src / lang_yaml).read_text())
    data_files = {split: str(data_file)}
    if benchmark == "mmlu":  # its few-shot split is always loaded, even zero-shot
        data_files["train"] = str(train_file or data_file)
    elif train_file is not None:
        data_files["train"] = str(train_file)
    name = f"ref_{benchmark}"
    # A private datasets cache, so the test leaves nothing in ~/.cache.
    kwargs = {"data_files": data_files, "cache_dir": str(task_dir / "cache")}
    config.update(task=name, dataset_path="parquet", dataset_name=None, dataset_kwargs=kwargs)
    if benchmark == "arc":
        config.update(training_split="train" if train_file else None, validation_split=None, test_split="test")
    if benchmark == "hellaswag":
        config.update(validation_split="validation")
    (task_dir / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return name


def per_doc(raw: dict, task: str) -> list[dict]:
    return sorted(raw["samples"][task], key=lambda s: s["doc_id"])


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    return load_lm(tiny_model_dir, EvalConfig(batch_size=4))


@pytest.fixture(scope="module")
def compared(tiny_lm, tmp_path_factory):
    """Zero-shot: our task and lm-eval's okapi task, in one run on the same file and model, for each benchmark."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tmp = tmp_path_factory.mktemp("compare")
    data = write_data(tmp / "data")
    out = {}
    for benchmark in DATA:
        ours = write_task_yaml(tmp / "ours", benchmark, "vi", data / f"{benchmark}.parquet", cache_dir=tmp / "cache")
        ref = reference_task(tmp / f"ref_{benchmark}", benchmark, data / f"{benchmark}.parquet")
        manager = TaskManager(include_path=[str(tmp / "ours"), str(tmp / f"ref_{benchmark}")], include_defaults=False)
        raw = simple_evaluate(model=tiny_lm, tasks=[ours, ref], num_fewshot=0, task_manager=manager, log_samples=True)
        out[benchmark] = (raw, ours, ref)
    return data, out


@pytest.mark.parametrize("benchmark", list(DATA))
def test_same_prompts_loglikelihoods_and_accuracy_as_lm_eval_okapi(compared, benchmark):
    _, runs = compared
    raw, ours, ref = runs[benchmark]
    ours_docs, ref_docs = per_doc(raw, ours), per_doc(raw, ref)
    assert len(ours_docs) == len(ref_docs) == len(DATA[benchmark])
    for mine, theirs in zip(ours_docs, ref_docs, strict=True):
        # Same (context, continuation) for every choice, character for character.
        assert [list(a) for a in mine["arguments"]] == [list(a) for a in theirs["arguments"]]
        mine_ll = [r[0] for r in mine["filtered_resps"]]
        theirs_ll = [r[0] for r in theirs["filtered_resps"]]
        assert mine_ll == pytest.approx(theirs_ll, abs=1e-5)
        assert mine["acc"] == theirs["acc"]
        if benchmark != "mmlu":  # lm-eval's okapi MMLU reports acc only
            assert mine["acc_norm"] == theirs["acc_norm"]
    assert raw["results"][ours]["acc,none"] == raw["results"][ref]["acc,none"]
    # The okapi preprocessing really ran: tags gone, ctx_b capitalised, the 3- and 5-option items kept whole.
    first_context = ours_docs[0]["arguments"][0][0]
    if benchmark == "arc":
        assert first_context == "Question: Which gas do plants absorb?\nAnswer:"
        assert len(ours_docs[1]["arguments"]) == 3 and len(ours_docs[2]["arguments"]) == 5
        assert ours_docs[1]["arguments"][0][0] == "Question: Pick the liquid.\nAnswer:"
        assert ours_docs[3]["arguments"][0][1] == " heat. "
    if benchmark == "hellaswag":
        assert first_context == "Making tea: A man boils water. He"
        assert ours_docs[1]["arguments"][0][0] == "Cooking. Fry eggs: A cook cracks eggs."
        assert ours_docs[2]["arguments"][0][0] == "Biking: A girl sits on a bike. She then"
    if benchmark == "mmlu":
        assert first_context == "Question number 0: what is 0 + 0?\nA. 0\nB. 1\nC. 0\nD. none\nAnswer:"
        assert [a[1] for a in ours_docs[0]["arguments"]] == [" A", " B", " C", " D"]


def test_evaluate_models_loads_each_model_once_and_reports_every_benchmark(
    compared, tiny_model_dir, monkeypatch, tmp_path
):
    import okapi.evaluate as ev

    data, runs = compared
    loads = []
    real_load = ev.load_lm
    monkeypatch.setattr(ev, "load_lm", lambda path, cfg: loads.append(path) or real_load(path, cfg))
    samples = tmp_path / "samples"
    results = evaluate_models({"base": tiny_model_dir}, "vi", data, EvalConfig(), samples_dir=samples)
    assert loads == [tiny_model_dir]
    assert set(results) == {"base"} and set(results["base"]) == set(DATA)
    for benchmark, (raw, ours, ref) in runs.items():
        got = results["base"][benchmark]
        # Per-document correctness: one row per document, the same 0/1 as lm-eval's own samples, mean = the metric.
        per_doc_rows = read_jsonl(samples / f"base_{benchmark}.jsonl")
        assert [d["doc_id"] for d in per_doc_rows] == list(range(len(DATA[benchmark])))
        assert [(d["acc"], d["acc_norm"]) for d in per_doc_rows] == [
            (s["acc"], s["acc_norm"]) for s in per_doc(raw, ours)
        ]
        assert sum(d["acc_norm"] for d in per_doc_rows) / len(per_doc_rows) == pytest.approx(got["acc_norm"])
        assert set(got) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "protocol", "num_fewshot"}
        assert got["protocol"] == "lm_eval_okapi" and got["num_fewshot"] == 0  # the embedded default
        assert got["n"] == len(DATA[benchmark])
        assert got["acc"] == pytest.approx(raw["results"][ref]["acc,none"])
        assert 0.0 <= got["acc_norm"] <= 1.0 and got["acc_stderr"] >= 0.0
        if benchmark == "mmlu":  # equal-length letter choices: the length normalisation changes nothing
            assert got["acc_norm"] == got["acc"]
        else:
            assert got["acc_norm"] == pytest.approx(raw["results"][ref]["acc_norm,none"])


def test_few_shot_from_a_train_file_matches_lm_eval(tiny_lm, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    data = write_data(tmp_path / "data", {"arc": ARC})
    train = tmp_path / "train.parquet"
    write_parquet(
        [{**r, "id": "t" + r["id"], "instruction": "Train: " + r["instruction"]} for r in ARC],
        train,
        schemas.MULTIPLE_CHOICE,
    )
    ours = write_task_yaml(tmp_path / "ours", "arc", "vi", data / "arc.parquet", train, tmp_path / "cache")
    ref = reference_task(tmp_path / "ref", "arc", data / "arc.parquet", train_file=train)
    manager = TaskManager(include_path=[str(tmp_path / "ours"), str(tmp_path / "ref")], include_defaults=False)
    raw = simple_evaluate(
        model=tiny_lm,
        tasks=[ours, ref],
        num_fewshot=2,
        task_manager=manager,
        log_samples=True,
        fewshot_random_seed=7,
        limit=3,
    )
    contexts = [d["arguments"][0][0] for d in per_doc(raw, ours)]
    assert contexts == [d["arguments"][0][0] for d in per_doc(raw, ref)]
    for ctx in contexts:
        assert ctx.count("Question: Train: ") == 2 and ctx.count("Question: ") == 3


def test_few_shot_from_the_same_file_never_shows_the_scored_record(tiny_lm, tmp_path):
    data = write_data(tmp_path / "data", {"arc": ARC, "mmlu": MMLU})
    for benchmark, shots in (("arc", 3), ("mmlu", 2)):
        name = write_task_yaml(tmp_path / "tasks", benchmark, "vi", data / f"{benchmark}.parquet", None, tmp_path / "c")
        raw = run_task(tiny_lm, tmp_path / "tasks", name, num_fewshot=shots, limit=None, seed=1, log_samples=True)
        for doc in per_doc(raw, name):
            context = doc["arguments"][0][0]
            query = (arc_doc if benchmark == "arc" else mmlu_doc)(DATA[benchmark][doc["doc_id"]])["query"]
            assert context.count("Answer:") == shots + 1
            assert context.endswith(query) and context.count(query) == 1  # only as the question being asked
        if benchmark == "mmlu":  # okapi MMLU takes the first records in file order, skipping the scored one
            contexts = [d["arguments"][0][0] for d in per_doc(raw, name)]
            assert contexts[4].startswith("Question number 0") and "Question number 1" in contexts[4]
            assert contexts[0].startswith("Question number 1") and "Question number 2" in contexts[0]


def test_evaluate_model_and_cli_write_the_result(tiny_model_dir, tmp_path):
    data = write_data(tmp_path / "data", {"hellaswag": HELLASWAG})
    result = evaluate_model(tiny_model_dir, "hellaswag", "vi", data, EvalConfig(), limit=2)
    assert result["n"] == 2 and result["acc"] in (0.0, 0.5, 1.0)
    out = tmp_path / "res.json"
    code = main(
        [
            "--model",
            str(tiny_model_dir),
            "--benchmark",
            "hellaswag",
            "--lang",
            "vi",
            "--data",
            str(data),
            "--limit",
            "2",
            "--out",
            str(out),
        ]
    )
    written = json.loads(out.read_text())
    assert code == 0
    assert {k: written[k] for k in result} == result
    assert written["lang"] == "vi" and written["benchmark"] == "hellaswag" and written["num_fewshot"] == 0


# --- validation: one clear error naming file, record and field, before any model is loaded ------------------------


def bad(benchmark: str, tmp_path: Path, **changes) -> Path:
    rows = [dict(r) for r in DATA[benchmark]]
    rows[1].update(changes)
    path = tmp_path / f"{benchmark}.parquet"
    write_parquet(rows, path, SCHEMA[benchmark])
    return path


@pytest.mark.parametrize(
    ("benchmark", "changes", "words"),
    [
        ("arc", {"answer": "D"}, ["record 1 (id='a2')", "'answer'", "'D'", "allowed: A, B, C"]),
        ("arc", {"answer": None}, ["record 1 (id='a2')", "'answer'"]),
        ("arc", {"option_b": None, "option_c": None}, ["id='a2'", "1 option(s)", "at least 2"]),
        ("arc", {"option_b": "", "option_c": "water", "answer": "A"}, ["id='a2'", "'option_b'", "in order"]),
        ("arc", {"instruction": "  "}, ["id='a2'", "'instruction'"]),
        ("arc", {"id": ""}, ["record 1", "'id'"]),
        ("mmlu", {"option_e": "extra"}, ["id='m1'", "exactly 4"]),
        ("hellaswag", {"label": "7"}, ["record 1 (ind=11)", "'label'", "'0'..'3'"]),
        ("hellaswag", {"endings": ["only one"]}, ["ind=11", "'endings'", "at least 2"]),
        ("hellaswag", {"ctx_b": None}, ["ind=11", "'ctx_b'"]),
    ],
)
def test_bad_record_names_file_record_and_field(tmp_path, benchmark, changes, words):
    path = bad(benchmark, tmp_path, **changes)
    with pytest.raises(DataError) as err:
        load_benchmark_file(benchmark, path)
    message = str(err.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message


def test_missing_field_and_missing_file(tmp_path):
    path = tmp_path / "arc.parquet"
    write_parquet([{k: v for k, v in ARC[0].items()}], path, schemas.MULTIPLE_CHOICE)
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(path).drop_columns(["answer"]), path)
    with pytest.raises(DataError, match=r"arc\.parquet: missing field 'answer'"):
        load_benchmark_file("arc", path)
    with pytest.raises(DataError, match="no arc data; expected arc.parquet or arc_test.parquet"):
        evaluate_models({"m": tmp_path}, "vi", tmp_path / "nowhere", EvalConfig(benchmarks=["arc"]))


def test_too_many_shots_for_the_file_is_a_config_error(tmp_path, tiny_model_dir):
    data = write_data(tmp_path, {"arc": ARC})
    write_parquet(ARC[:4], tmp_path / "arc_train.parquet", schemas.MULTIPLE_CHOICE)
    with pytest.raises(ConfigError, match=r"evaluate.num_fewshot.arc = 5 .* only 4 few-shot examples"):
        evaluate_models({"m": tiny_model_dir}, "vi", data, EvalConfig(benchmarks=["arc"], num_fewshot={"arc": 5}))


def test_config_ranges_and_unknown_keys():
    with pytest.raises(ConfigError, match="evaluate.batch_size"):
        EvalConfig(batch_size=0)
    with pytest.raises(ConfigError, match="evaluate.benchmarks"):
        EvalConfig(benchmarks=["arc", "gsm8k"])
    with pytest.raises(ConfigError, match="evaluate.num_fewshot.winogrande"):
        EvalConfig(num_fewshot={"winogrande": 5})
    with pytest.raises(ConfigError, match="evaluate.device"):
        EvalConfig(device="tpu")
    with pytest.raises(ConfigError, match="unknown parameter evaluate.shots"):
        from_dict(EvalConfig, {"shots": 3}, "evaluate")
    cfg = from_dict(EvalConfig, {"num_fewshot": {"arc": 25, "hellaswag": 10, "mmlu": 5}, "limit": 10}, "evaluate")
    assert cfg.shots("arc") == 25 and cfg.limit == 10
    with pytest.raises(ConfigError, match=r"evaluate.protocol = 'harness' is invalid; allowed: 'okapi_paper'"):
        from_dict(EvalConfig, {"protocol": "harness"}, "evaluate")


def test_cli_bad_input_is_one_error_and_exit_code_2(tmp_path, tiny_model_dir, capsys):
    def cli(lang: str, data: Path) -> int:
        out = str(tmp_path / "o.json")
        return main(
            ["--model", str(tiny_model_dir), "--benchmark", "arc", "--lang", lang, "--data", str(data), "--out", out]
        )

    path = bad("arc", tmp_path, answer="E")
    code = cli("vi", path.parent)
    err = capsys.readouterr().err
    assert code == 2
    assert "id='a2'" in err and "'answer'" in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()
    code = cli("xx", tmp_path)
    assert code == 2 and "unknown language code 'xx'" in capsys.readouterr().err


# --- okapi.chat (tested here: this file covers the evaluation/chat part of the project) ---------------------------


def test_chat_one_shot_and_loop_use_the_alpaca_prompt(tiny_model_dir, monkeypatch, capsys):
    import io

    import okapi.sampling
    from okapi import chat
    from okapi.modeling import load_causal_lm
    from okapi.prompting import format_prompt

    seen = []
    real = okapi.sampling.encode_prompts
    monkeypatch.setattr(
        okapi.sampling, "encode_prompts", lambda tok, prompts, dev: seen.extend(prompts) or real(tok, prompts, dev)
    )
    argv = ["--model", str(tiny_model_dir), "--greedy", "--max-new-tokens", "6"]
    assert chat.main([*argv, "--prompt", "Give three tips", "--input", "for sleep"]) == 0
    one_shot = capsys.readouterr().out
    assert seen == [format_prompt("Give three tips", "for sleep")]
    assert one_shot.endswith("\n") and one_shot.count("\n") == 1

    model, tok = load_causal_lm(tiny_model_dir, for_training=False)
    out = io.StringIO()
    turns = chat.chat_loop(
        model, tok, io.StringIO("Give three tips\nSay hi\nquit\nnever asked\n"), out, max_new_tokens=6, greedy=True
    )
    assert turns == 2 and seen[1:] == [format_prompt("Give three tips", None), format_prompt("Say hi", None)]
    greedy = chat.respond(model, tok, "Give three tips", "for sleep", max_new_tokens=6, greedy=True)
    assert one_shot == greedy + "\n"  # the CLI prints exactly the model's greedy response
    assert chat.main([*argv, "--input", "x"]) == 2 and "--input" in capsys.readouterr().err


@pytest.mark.parametrize("benchmark", list(DATA))
def test_shipped_english_sources_are_valid_benchmark_records(tmp_path, benchmark):
    from okapi.io import read_jsonl

    rows = read_jsonl(Path(__file__).resolve().parents[2] / "data" / "eval_sources" / f"{benchmark}.jsonl")
    path = tmp_path / f"{benchmark}.parquet"
    write_parquet(rows, path, SCHEMA[benchmark])
    assert len(load_benchmark_file(benchmark, path)) == len(rows) >= 25
    if benchmark == "arc":
        counts = {sum(1 for f in ("option_a", "option_b", "option_c", "option_d", "option_e") if r[f]) for r in rows}
        assert counts == {3, 4, 5}


def test_reference_models_from_params_are_validated_and_evaluated(tmp_path, tiny_model_dir, monkeypatch):
    import subprocess
    import sys

    import yaml

    from okapi.config import ConfigError, from_dict
    from okapi.evaluate import EvalConfig

    with pytest.raises(ConfigError, match="evaluate.reference_models"):
        from_dict(EvalConfig, {"reference_models": {"bad name": "x"}}, "evaluate")

    root = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"].update(benchmarks=["arc"], limit=2, reference_models={"bloomz": str(tiny_model_dir)})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    data = tmp_path / "data"
    data.mkdir()
    rows = [json.loads(x) for x in (root / "data/eval_sources/arc.jsonl").read_text().splitlines()[:4]]
    write_parquet(rows, data / "arc.parquet", MULTIPLE_CHOICE)
    out = tmp_path / "vi.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.evaluate",
            "--lang",
            "vi",
            "--model",
            f"base={tiny_model_dir}",
            "--data",
            str(data),
            "--out",
            str(out),
            "--samples",
            str(tmp_path / "docs"),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result) == {"lang", "base", "bloomz"}
    assert result["bloomz"]["arc"]["n"] == 2
    # The stage's per-document output: one JSON line per scored document, per model and benchmark.
    from okapi.io import read_jsonl

    for model in ("base", "bloomz"):
        rows = read_jsonl(tmp_path / "docs" / f"{model}_arc.jsonl", required=("doc_id", "acc", "acc_norm"))
        assert [r["doc_id"] for r in rows] == [0, 1]
        assert sum(r["acc_norm"] for r in rows) / 2 == pytest.approx(result[model]["arc"]["acc_norm"])


def test_choices_share_their_context_with_lm_evals_loglikelihoods(tiny_model_dir):
    """evaluate.share_context: a context's choices are scored after one pass over it, with HFLM's log-likelihoods
    and greedy flags (to float rounding), in the requests' order, each answer given to lm-eval's cache hook;
    requests HFLM would truncate go to HFLM's own method."""
    shared = load_lm(tiny_model_dir, EvalConfig(batch_size=2))
    plain = load_lm(tiny_model_dir, EvalConfig(batch_size=2, share_context=False))
    assert type(shared).__name__ == "SharedContextHFLM" and type(plain).__name__ == "HFLM"
    tok = shared.tokenizer
    ctx_a = tok("Question: which of these is a fruit? Answer:")["input_ids"]
    ctx_b = tok("Pregunta: ¿cuál es la capital? Respuesta:")["input_ids"]
    conts = [tok(" an apple")["input_ids"], tok(" a stone that is grey")["input_ids"], tok(" B")["input_ids"]]
    requests = [(("a", str(i)), ctx_a, c) for i, c in enumerate(conts)] + [(("b", "0"), ctx_b, conts[1])]
    requests.insert(1, (("b", "1"), ctx_b, conts[0]))  # contexts interleaved: answers keep the requests' order
    added = []
    shared.cache_hook.add_partial = lambda kind, request, answer: added.append((request, answer))
    got = shared._loglikelihood_tokens(requests)
    want = plain._loglikelihood_tokens(requests)
    assert [g[1] for g in got] == [w[1] for w in want]
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-4)
    assert sorted(added) == sorted((r[0], g) for r, g in zip(requests, got, strict=True))
    # Longer than the model's context: HFLM's method (which truncates from the left), the same answers as plain.
    long_ctx = ctx_a * (plain.max_length // len(ctx_a) + 1)
    assert shared._loglikelihood_tokens([(None, long_ctx, conts[0])]) == plain._loglikelihood_tokens(
        [(None, long_ctx, conts[0])]
    )
