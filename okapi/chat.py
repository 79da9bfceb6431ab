"""Talk to a trained model: ``python -m okapi.chat --model models/<lang>/<stage>``.

Every turn is one Alpaca-format prompt (okapi.prompting.format_prompt), exactly what SFT trained on and PPO
optimised, so what you see is what the reward model scored. Turns are independent: the paper's models are
single-turn instruction followers. ``--prompt TEXT`` answers once and exits (scripts, tests).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from okapi.config import check
from okapi.prompting import format_prompt

log = logging.getLogger(__name__)

QUIT = {"exit", "quit", ":q"}


def respond(
    model: Any,
    tokenizer: Any,
    instruction: str,
    input: str | None = None,  # noqa: A002 - the data contract's field name
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 0.9,
    greedy: bool = False,
) -> str:
    """The model's response to one instruction (and optional input), cut at its first EOS."""
    from okapi.sampling import decode_responses, encode_prompts, eos_ids, generate, response_mask

    ids, mask = encode_prompts(tokenizer, [format_prompt(instruction, input)], model.device)
    out = generate(
        model,
        tokenizer,
        ids,
        mask,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        do_sample=not greedy,
    )
    return decode_responses(tokenizer, out, response_mask(out, eos_ids(model, tokenizer), tokenizer.pad_token_id))[0]


def chat_loop(model: Any, tokenizer: Any, stdin: TextIO, stdout: TextIO, **decoding: Any) -> int:
    """Answer one instruction per line until EOF, an empty line or exit/quit; returns the number of turns."""
    turns = 0
    prompt = "instruction> " if stdin.isatty() else ""
    stdout.write(prompt)
    stdout.flush()
    for line in stdin:
        text = line.strip()
        if not text or text.lower() in QUIT:
            break
        stdout.write(respond(model, tokenizer, text, **decoding) + "\n")
        turns += 1
        stdout.write(prompt)
        stdout.flush()
    return turns


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(prog="python -m okapi.chat", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="model folder, e.g. models/vi/ppo")
    p.add_argument("--prompt", help="answer this one instruction and exit")
    p.add_argument("--input", default=None, help="optional input for --prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    check(args.max_new_tokens >= 1, "--max-new-tokens", args.max_new_tokens, "an integer >= 1")
    check(0 < args.temperature <= 5, "--temperature", args.temperature, "0 < t <= 5")
    check(0 < args.top_p <= 1, "--top-p", args.top_p, "0 < p <= 1")
    if args.input is not None and args.prompt is None:
        check(False, "--input", args.input, "only together with --prompt")

    import torch

    from okapi.modeling import load_causal_lm

    torch.manual_seed(args.seed)
    model, tokenizer = load_causal_lm(args.model, for_training=False)
    decoding = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "greedy": args.greedy,
    }
    if args.prompt is not None:
        check(bool(args.prompt.strip()), "--prompt", args.prompt, "a non-empty instruction")
        sys.stdout.write(respond(model, tokenizer, args.prompt, args.input, **decoding) + "\n")
        return
    log.info("chatting with %s; an empty line, exit or quit ends", args.model)
    chat_loop(model, tokenizer, sys.stdin, sys.stdout, **decoding)


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
