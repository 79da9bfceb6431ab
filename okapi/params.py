"""params.yaml -> validated config objects, with per-language overrides.

Layout of params.yaml: one section per stage (``teacher``, ``generate``, ``translate``, ``sft``, ``sft_full``,
``sample``, ``rank``, ``rm``, ``ppo``, ``evaluate``, ``report``, ``released``), ``base``, the launchers, and
``languages``: a mapping from a language code (Table 1's, any code langcodes knows, or a made-up one that the params
describe) to that language's metadata keys (okapi.languages.LanguageSpec: name, script, group, langid) and overrides
of any stage section, side by side, e.g.::

    languages:
      vi: {translate: {limit: 40}}
      ja: {}
      xx: {name: Klingon, script: Latn, group: L, translate: {limit: 10}}

DVC tracks ``languages.<code>`` as a param of that language's stages only, so changing one language's override
reruns only that language's column of stages.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from okapi.config import ConfigError, from_dict
from okapi.languages import METADATA_KEYS, configure

# Each section's config class, imported only when that section is read: a stage that validates the teacher section
# does not pay for torch because the sft section's class lives beside the training code. One explicit import per
# section (no "module:Class" strings), so the dependency is visible where it is declared.


def _teacher() -> type:
    from okapi.teacher import TeacherConfig

    return TeacherConfig


def _generate() -> type:
    from okapi.selfinstruct import GenerateConfig

    return GenerateConfig


def _translate() -> type:
    from okapi.translate import TranslateConfig

    return TranslateConfig


def _sft() -> type:
    from okapi.sft import SFTConfig

    return SFTConfig


def _sample() -> type:
    from okapi.sampling import SampleConfig

    return SampleConfig


def _rank() -> type:
    from okapi.ranking import RankConfig

    return RankConfig


def _rm() -> type:
    from okapi.reward import RewardConfig

    return RewardConfig


def _ppo() -> type:
    from okapi.ppo.config import PPOConfig

    return PPOConfig


def _evaluate() -> type:
    from okapi.evaluate import EvalConfig

    return EvalConfig


def _released() -> type:
    from okapi.released import ReleasedConfig

    return ReleasedConfig


def _base() -> type:
    from okapi.modeling import BaseModelConfig

    return BaseModelConfig


def _report() -> type:
    from okapi.report import ReportConfig

    return ReportConfig


# Sections a language may override (languages.<code>.<section>), as params.yaml spells them.
SECTIONS: dict[str, Callable[[], type]] = {
    "teacher": _teacher,
    "generate": _generate,
    "translate": _translate,
    "sft": _sft,
    "sft_full": _sft,  # the SFT-only baseline: the same recipe, its own values
    "sample": _sample,
    "rank": _rank,
    "rm": _rm,
    "ppo": _ppo,
    "evaluate": _evaluate,
    "released": _released,
}
# Sections set once for all languages.
GLOBAL_SECTIONS: dict[str, Callable[[], type]] = {"base": _base, "report": _report}
# Top-level scalars: the launchers are read by dvc.yaml itself.
SCALARS = ("launcher", "ppo_launcher")

_KNOWN_TOP = set(SECTIONS) | set(GLOBAL_SECTIONS) | set(SCALARS) | {"languages"}


# Keys that older params files hold and no stage reads any more, with what replaced them.
_RETIRED = {
    "seed": "every stage that draws random numbers has its own seed (generate.seed, translate.seed, sft.seed, "
    "sft_full.seed, sample.seed, rm.seed, ppo.seed, evaluate.seed, released.seed) and base, rank and report draw "
    "none; delete the top-level seed",
}


def config_class(section: str) -> type:
    """The dataclass that validates ``section`` (a key of SECTIONS or GLOBAL_SECTIONS)."""
    return {**SECTIONS, **GLOBAL_SECTIONS}[section]()


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
    retired = sorted(set(raw) & set(_RETIRED))
    if retired:
        raise ConfigError(f"{p}: parameter {retired[0]} is no longer read: {_RETIRED[retired[0]]}")
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

    @property
    def base(self) -> Any:
        """The ``base`` section (validated on first use: the class lives with the model code)."""
        return self._global("base")

    @property
    def report(self) -> Any:
        return self._global("report")

    def _global(self, name: str) -> Any:
        data = self.raw.get(name) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"parameter {name} must be a mapping", name)
        return from_dict(config_class(name), data, name)

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
            raise ConfigError(f"parameter {name} must be a mapping", name)
        override = (self.raw["languages"].get(lang) or {}).get(name) if lang is not None else None
        if override and not isinstance(override, dict):
            raise ConfigError(f"parameter languages.{lang}.{name} must be a mapping", f"languages.{lang}.{name}")
        try:
            return from_dict(config_class(name), _merge(data, override) if override else data, name)
        except ConfigError as err:
            # Name the key where the user wrote the bad value: the language's override or the top-level section.
            if override and err.key and err.key.split(".")[1:2] and err.key.split(".")[1] in override:
                raise err.renamed(f"languages.{lang}.{err.key}") from None
            raise

    def validate_all(self) -> None:
        """Validate every section, and every language's overrides of it (a profile check; stages read their own)."""
        for name in GLOBAL_SECTIONS:
            self._global(name)
        for name in SECTIONS:
            self.section_global(name)
            for lang in self.languages:
                self._section(name, lang)


def load_params(path: str | Path = "params.yaml", lang: str | None = None, sections: tuple[str, ...] = ()) -> Params:
    """Load and validate params; ``sections`` are checked at once so bad values stop the stage before any work."""
    params = Params(read_params_file(path), lang)
    for name in sections:
        params.section(name)
    return params
