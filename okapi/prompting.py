"""The Alpaca prompt template, used identically by SFT, sampling, the reward model, PPO and chat.

Okapi fine-tunes on (instruction, input, output) triples in the Alpaca format; keeping one template in one place
guarantees the reward model scores exactly the text the policy was trained to continue.
"""

from __future__ import annotations

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_prompt(instruction: str, input: str | None) -> str:
    """The Alpaca prompt; an empty or whitespace-only input selects the no-input variant, as in Alpaca."""
    if instruction is None or not str(instruction).strip():
        raise ValueError("format_prompt: instruction is empty; every example needs a non-empty instruction")
    instruction = instruction.strip()
    if input is None or not input.strip():
        return PROMPT_NO_INPUT.format(instruction=instruction)
    return PROMPT_WITH_INPUT.format(instruction=instruction, input=input.strip())


def format_example(instruction: str, input: str | None, output: str) -> tuple[str, str]:
    """(prompt, completion) for SFT; the completion is the bare response (the trainer appends EOS)."""
    if output is None:
        raise ValueError("format_example: output is missing; SFT needs a target response")
    return format_prompt(instruction, input), output.strip()
