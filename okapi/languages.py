"""Languages: the paper's Table 1 (Lai et al., 2023) plus any language a user names in params.yaml.

Used to validate params, to name the target language in the teacher's prompts, to pick the script and language-ID
checks of the translation validator and to group the report.

Where each field comes from:

- Table 1's figures (CC share, the H / M / L category, the BLOOM / LLaMA flags) are the paper's data and exist only
  for its 26 target languages (and English, the source).
- The English name and the expected script(s) of every language come from ``langcodes`` + ``language_data``
  (CLDR's names and likely-subtag data). They are chosen because they are maintained from CLDR / the IANA
  registry, cover every ISO 639 code, need no network, and give the script as an ISO 15924 code, which is also the
  alias the ``regex`` module uses for Unicode script properties -- so the script check needs no hand-typed table.
  Composite ISO 15924 codes (``Jpan`` = Han + Hiragana + Katakana, ``Kore`` = Hangul + Han, ``Hans`` / ``Hant`` =
  Han) are expanded to the Unicode scripts they mix. One exception, tested: CLDR now calls ``bn`` "Bangla" where
  Table 1 (and the paper's prompts) say "Bengali"; the paper's name is kept for its 26 languages.
- Language ID uses py3langid's code when py3langid knows the language; otherwise the check is not run and the
  translate metrics say so (``langid_unavailable``).
- ``languages.<code>`` in params.yaml may describe or override any of it::

      languages:
        ja: {}                                   # name and scripts from langcodes, group X (outside Table 1)
        xx: {name: Klingon, script: Latn, group: L, langid: null}   # a code no library knows
        vi: {translate: {limit: 40}}             # stage-section overrides sit beside the metadata keys

Groups: H, M, L (Table 1's categories, or what the params name), X (outside Table 1) and EN (English, the source
language, kept apart from the target languages in the report).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from okapi.config import ConfigError, from_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table1Row:
    """One row of the paper's Table 1 (paper data, not derived)."""

    name: str
    cc_share: float  # percentage of CommonCrawl (Table 1, "CC Size (%)")
    category: str  # "H" (> 1 %), "M" (> 0.1 %), "L" (> 0.01 %)
    bloom: bool
    llama: bool


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # English name, used in the teacher's prompts
    scripts: tuple[str, ...]  # Unicode scripts (ISO 15924 aliases, e.g. Latn, Hani, Hira) a translation may use
    group: str  # report group: H / M / L / X (outside Table 1) / EN (the source language)
    langid_setting: str | None  # languages.<code>.langid: "auto", a py3langid code, or None (no check)
    table1: Table1Row | None  # the paper's figures, for its 26 languages and English only
    origin: str  # where name and scripts came from: "library" or "params"

    @property
    def is_source(self) -> bool:
        return self.code == SOURCE_LANGUAGE

    @property
    def langid(self) -> str | None:
        """py3langid's code for the language, None when py3langid does not know it (or the params say null).

        Looked up on use: loading py3langid's model to read its list takes seconds, and only translate needs it."""
        if self.langid_setting != "auto":
            return self.langid_setting
        base = self.code.split("-")[0].lower()  # pt-BR, zh-Hant: py3langid knows the language, not the variant
        return next((c for c in (self.code, base) if c in langid_codes()), None)


# Table 1 of the paper, in its order: code, name, CC share, category, BLOOM, LLaMA.
_TABLE_1 = [
    ("en", "English", 45.8786, "H", True, True),
    ("ru", "Russian", 5.9692, "H", True, True),
    ("de", "German", 5.8811, "H", True, True),
    ("zh", "Chinese", 4.8747, "H", True, False),
    ("fr", "French", 4.7254, "H", True, True),
    ("es", "Spanish", 4.4690, "H", True, True),
    ("it", "Italian", 2.5712, "H", True, True),
    ("nl", "Dutch", 2.0585, "H", True, True),
    ("vi", "Vietnamese", 1.0299, "H", True, False),
    ("id", "Indonesian", 0.7991, "M", True, False),
    ("ar", "Arabic", 0.6658, "M", True, False),
    ("hu", "Hungarian", 0.6093, "M", True, True),
    ("ro", "Romanian", 0.5637, "M", True, True),
    ("da", "Danish", 0.4301, "M", True, True),
    ("sk", "Slovak", 0.3777, "M", True, True),
    ("uk", "Ukrainian", 0.3304, "M", True, True),
    ("ca", "Catalan", 0.2314, "M", True, True),
    ("sr", "Serbian", 0.2205, "M", True, True),
    ("hr", "Croatian", 0.1979, "M", True, True),
    ("hi", "Hindi", 0.1588, "M", True, False),
    ("bn", "Bengali", 0.0930, "L", True, False),
    ("ta", "Tamil", 0.0446, "L", True, False),
    ("ne", "Nepali", 0.0304, "L", True, False),
    ("ml", "Malayalam", 0.0222, "L", True, False),
    ("mr", "Marathi", 0.0213, "L", True, False),
    ("te", "Telugu", 0.0183, "L", True, False),
    ("kn", "Kannada", 0.0122, "L", True, False),
]
TABLE_1: dict[str, Table1Row] = {row[0]: Table1Row(*row[1:]) for row in _TABLE_1}
SOURCE_LANGUAGE = "en"
TARGET_LANGUAGES: tuple[str, ...] = tuple(code for code in TABLE_1 if code != SOURCE_LANGUAGE)

# Report groups in report order. English is the source language: apart from the targets and their Average.
GROUP_NAMES = {
    "H": "High-Resource",
    "M": "Medium-Resource",
    "L": "Low-Resource",
    "X": "Outside Table 1",
    "EN": "Source language",
}
TARGET_GROUPS = ("H", "M", "L", "X")
CATEGORY_NAMES = {g: GROUP_NAMES[g] for g in ("H", "M", "L")}  # Table 1's categories

# Keys of languages.<code> that describe the language (the others are stage-section overrides).
METADATA_KEYS = ("name", "script", "group", "langid")

# ISO 15924 codes that name a writing system mixing several Unicode scripts.
_COMPOSITE_SCRIPTS = {
    "Jpan": ("Hani", "Hira", "Kana"),
    "Kore": ("Hang", "Hani"),
    "Hans": ("Hani",),
    "Hant": ("Hani",),
    "Hanb": ("Hani", "Bopo"),
    "Hrkt": ("Hira", "Kana"),
}


class UnknownLanguageError(ConfigError):
    pass


@dataclass
class LanguageSpec:
    """The metadata keys of ``languages.<code>`` in params.yaml (beside the stage-section overrides)."""

    name: str | None = None
    """English name, as the teacher's prompts say it (null: Table 1's name, else langcodes' CLDR name)."""
    script: str | list[str] | None = None
    """ISO 15924 code(s) of the script(s) a translation is expected to use, e.g. Latn, or Jpan for Han + Hiragana +
    Katakana (null: langcodes' likely script for the language)."""
    group: Literal["H", "M", "L", "X"] | None = None
    """Report group: H / M / L (Table 1's resource categories) or X (outside Table 1) (null: Table 1's category,
    else X). English is always its own group."""
    langid: str | None = "auto"
    """py3langid code for the language-ID check; auto: the language's own code when py3langid knows it; null: no
    language-ID check (counted as langid_unavailable in the translate metrics)."""


# -- library look-ups -----------------------------------------------------------------------------------------------
def expand_scripts(value: str | list[str] | tuple[str, ...], where: str) -> tuple[str, ...]:
    """ISO 15924 code(s) or Unicode script name(s) -> the Unicode scripts to count, checked against ``regex``."""
    import regex

    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise ConfigError(
            f"parameter {where} = {value!r} is invalid; expected an ISO 15924 script code (e.g. Latn, Cyrl, Jpan) "
            "or a list of them"
        )
    out: list[str] = []
    for item in items:
        for script in _COMPOSITE_SCRIPTS.get(item.strip(), (item.strip(),)):
            try:
                regex.compile(rf"\p{{scx={script}}}")
            except regex.error as err:
                raise ConfigError(
                    f"parameter {where} = {value!r} is invalid: {script!r} is not a Unicode script; use ISO 15924 "
                    "codes such as Latn, Cyrl, Arab, Deva, Hani, Hira, Kana, Hang or Jpan"
                ) from err
            if script not in out:
                out.append(script)
    return tuple(out)


@cache
def _library_entry(code: str) -> tuple[str, str] | None:
    """(English name, ISO 15924 script) from langcodes / language_data, or None when the library does not know
    the language (an invalid code, or a valid one without a name or likely-script entry in CLDR)."""
    import langcodes
    from langcodes.data_dicts import LIKELY_SUBTAGS

    try:
        if not langcodes.tag_is_valid(code):
            return None
        tag = langcodes.Language.get(code, normalize=False)
    except (ValueError, LookupError):
        return None
    if tag.language is None or tag.language == "und" or tag.language not in LIKELY_SUBTAGS:
        return None  # maximize() would fall back to und's guess (Latin), which says nothing about this language
    name = tag.display_name("en")
    if name.startswith("Unknown language"):
        return None
    script = tag.script or tag.maximize().script
    return (name, script) if script else None


@lru_cache(maxsize=1)
def langid_codes() -> frozenset[str]:
    """The languages py3langid's bundled model can recognise."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return frozenset(LanguageIdentifier.from_model_file(MODEL_FILE).nb_classes)


# -- resolution -----------------------------------------------------------------------------------------------------
def _unknown(code: str) -> UnknownLanguageError:
    return UnknownLanguageError(
        f"unknown language code {code!r}: langcodes (CLDR) does not know it and params.yaml does not describe it; "
        f"add languages.{code}.name (its English name) and languages.{code}.script (ISO 15924, e.g. Latn) to "
        "params.yaml, or use an ISO 639 code (Table 1's: " + ", ".join(TARGET_LANGUAGES) + ")"
    )


def resolve(code: str, spec: Mapping[str, Any] | None = None) -> Language:
    """The Language for ``code``: library defaults, Table 1's data, then the params' metadata keys on top.

    ``spec`` is the ``languages.<code>`` mapping of params.yaml; its stage-section overrides are ignored here.
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(f"language code {code!r} is invalid; expected an ISO 639 code such as vi or ja")
    meta = from_dict(LanguageSpec, {k: v for k, v in (spec or {}).items() if k in METADATA_KEYS}, f"languages.{code}")
    row = TABLE_1.get(code)
    library = _library_entry(code)
    if library is None and row is None and (meta.name is None or meta.script is None):
        raise _unknown(code)
    name = meta.name
    if name is None:
        name = row.name if row is not None else library[0]  # Table 1's spelling wins for its languages (bn)
    if not name.strip():
        raise ConfigError(
            f"parameter languages.{code}.name = {name!r} is invalid; expected the language's English name"
        )
    script = meta.script if meta.script is not None else library[1]
    scripts = expand_scripts(script, f"languages.{code}.script")
    origin = "params" if (meta.name is not None or meta.script is not None) else "library"

    if code == SOURCE_LANGUAGE:
        if meta.group is not None:
            raise ConfigError(
                f"parameter languages.{code}.group = {meta.group!r} is invalid; English is the source language and "
                "is always reported apart (leave the key out)"
            )
        group = "EN"
    else:
        group = meta.group or (row.category if row is not None else "X")

    if meta.langid not in ("auto", None) and meta.langid not in langid_codes():
        raise ConfigError(
            f"parameter languages.{code}.langid = {meta.langid!r} is invalid; allowed: auto, null (no language-ID "
            "check) or one of py3langid's codes: " + ", ".join(sorted(langid_codes()))
        )
    return Language(code, name.strip(), scripts, group, meta.langid, row, origin)


# The languages of the loaded params.yaml (okapi.params.Params calls configure); get_language looks here first so
# every module sees the user's descriptions without the params being threaded through every call.
_CONFIGURED: dict[str, Language] = {}


def configure(specs: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Language]:
    """Resolve every language of params.yaml's ``languages`` and make them the ones get_language returns."""
    resolved = {str(code): resolve(str(code), spec) for code, spec in specs.items()}
    _CONFIGURED.clear()
    _CONFIGURED.update(resolved)
    return resolved


def get_language(code: str) -> Language:
    """The language as params.yaml describes it, else from Table 1 and the library; one clear error otherwise."""
    if code in _CONFIGURED:
        return _CONFIGURED[code]
    return resolve(code)


def group_of(code: str) -> str:
    return get_language(code).group


def report_groups(codes: list[str]) -> list[tuple[str, list[str]]]:
    """[(group, codes)] in report order: H, M, L, X, then English apart; Table 1 order inside a Table 1 group, codes
    in alphabetical order otherwise, so the layout does not depend on the order results were read in."""
    table_order = {code: i for i, code in enumerate(TABLE_1)}
    out = []
    for group in GROUP_NAMES:
        members = [c for c in codes if get_language(c).group == group]
        members.sort(key=lambda c: (table_order.get(c, len(table_order)), c))
        if members:
            out.append((group, members))
    return out


# -- command line -----------------------------------------------------------------------------------------------------
def describe(lang: Language) -> str:
    """One line: what the pipeline will use for a language."""
    if lang.is_source:
        checks = "none (English passes through untranslated)"
    else:
        langid = f"py3langid {lang.langid}" if lang.langid else "no py3langid check (counted as langid_unavailable)"
        checks = f"scripts {' + '.join(lang.scripts)}; {langid}"
    table = f"Table 1: CC {lang.table1.cc_share}%" if lang.table1 else "not in Table 1"
    return f"{lang.code}\t{lang.name}\tgroup {lang.group} ({GROUP_NAMES[lang.group]})\t{checks}\t{table}\t{lang.origin}"


def _main(argv: list[str] | None = None) -> None:
    import argparse
    import sys
    from pathlib import Path

    p = argparse.ArgumentParser(description="Show how the pipeline sees languages (name, scripts, group, checks).")
    p.add_argument("codes", nargs="*", help="language codes (default: the languages of --params)")
    p.add_argument("--params", default="params.yaml", help="params file whose languages.<code> describe them")
    args = p.parse_args(argv)
    codes = list(args.codes)
    if Path(args.params).is_file():
        from okapi.params import load_params

        codes = codes or load_params(args.params).languages
    elif not codes:
        raise ConfigError(f"{args.params}: params file not found; pass language codes or --params")
    sys.stdout.write("".join(describe(get_language(code)) + "\n" for code in codes))


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
