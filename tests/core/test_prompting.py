from __future__ import annotations

import pytest

from okapi.prompting import format_example, format_prompt


def test_no_input_variant_is_the_alpaca_template() -> None:
    assert format_prompt("Give three tips.", None) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nGive three tips.\n\n### Response:\n"
    )


def test_input_variant_is_the_alpaca_template() -> None:
    assert format_prompt("Translate.", "Xin chào") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate.\n\n### Input:\nXin chào\n\n### Response:\n"
    )


@pytest.mark.parametrize("empty", [None, "", "   \n"])
def test_empty_input_selects_the_no_input_variant(empty: str | None) -> None:
    prompt = format_prompt("Say hi.", empty)
    assert "### Input:" not in prompt
    assert prompt == format_prompt("Say hi.", None)


def test_fields_are_stripped_and_prompt_ends_where_the_response_starts() -> None:
    prompt = format_prompt("  Say hi. \n", "  there ")
    assert "### Instruction:\nSay hi.\n\n" in prompt
    assert "### Input:\nthere\n\n" in prompt
    assert prompt.endswith("### Response:\n")


def test_non_latin_text_is_kept_verbatim() -> None:
    prompt = format_prompt("Переведите текст.", "中文文本示例。")
    assert "Переведите текст." in prompt and "中文文本示例。" in prompt


def test_format_example_pairs_the_shared_prompt_with_the_bare_output() -> None:
    prompt, completion = format_example("Give three tips.", "", " Eat well, sleep, exercise.\n")
    assert prompt == format_prompt("Give three tips.", None)
    assert completion == "Eat well, sleep, exercise."


@pytest.mark.parametrize("instruction", ["", "  ", None])
def test_empty_instruction_is_rejected(instruction: str | None) -> None:
    with pytest.raises(ValueError, match="instruction is empty"):
        format_prompt(instruction, None)  # type: ignore[arg-type]


def test_missing_output_is_rejected() -> None:
    with pytest.raises(ValueError, match="output is missing"):
        format_example("Say hi.", None, None)  # type: ignore[arg-type]
