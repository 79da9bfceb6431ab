"""okapi.languages: Table 1's data, the library's names and scripts, params-described languages, report groups."""

from __future__ import annotations

import langcodes
import pytest

from okapi.config import ConfigError
from okapi.languages import (
    TABLE_1,
    TARGET_LANGUAGES,
    UnknownLanguageError,
    get_language,
    report_groups,
    resolve,
)
from okapi.params import Params

# The scripts the registry used to hand-type for Table 1's languages (and that the paper's languages are written in),
# as Unicode script aliases: the library must give the same.
TABLE_1_SCRIPTS = {
    "en": ("Latn",), "ru": ("Cyrl",), "de": ("Latn",), "zh": ("Hani",), "fr": ("Latn",), "es": ("Latn",),
    "it": ("Latn",), "nl": ("Latn",), "vi": ("Latn",), "id": ("Latn",), "ar": ("Arab",), "hu": ("Latn",),
    "ro": ("Latn",), "da": ("Latn",), "sk": ("Latn",), "uk": ("Cyrl",), "ca": ("Latn",), "sr": ("Cyrl",),
    "hr": ("Latn",), "hi": ("Deva",), "bn": ("Beng",), "ta": ("Taml",), "ne": ("Deva",), "ml": ("Mlym",),
    "mr": ("Deva",), "te": ("Telu",), "kn": ("Knda",),
}  # fmt: skip
# CLDR renamed Bengali to Bangla; the paper (and its prompts) say Bengali, which the library still recognises.
CLDR_RENAMED = {"bn": "Bangla"}


def test_table_1_has_the_papers_26_languages_and_figures():
    assert len(TARGET_LANGUAGES) == 26 and "en" not in TARGET_LANGUAGES
    assert [c for c in TABLE_1 if TABLE_1[c].category == "H"] == ["en", "ru", "de", "zh", "fr", "es", "it", "nl", "vi"]
    assert sum(TABLE_1[c].category == "M" for c in TARGET_LANGUAGES) == 11
    assert sum(TABLE_1[c].category == "L" for c in TARGET_LANGUAGES) == 7
    assert TABLE_1["vi"].cc_share == 1.0299 and not TABLE_1["vi"].llama and TABLE_1["kn"].bloom


@pytest.mark.parametrize("code", list(TABLE_1))
def test_library_agrees_with_table_1(code):
    lang = resolve(code)
    row = TABLE_1[code]
    # Names: the library's English name is Table 1's (or a documented CLDR rename), and it maps Table 1's name back
    # to the code.
    assert langcodes.Language.get(code).display_name() == CLDR_RENAMED.get(code, row.name)
    assert langcodes.find(row.name).language == code
    assert lang.name == row.name  # the paper's spelling is what prompts and reports use
    assert lang.scripts == TABLE_1_SCRIPTS[code]
    assert lang.group == ("EN" if code == "en" else row.category)
    assert lang.langid == code and lang.table1 is row and lang.origin == "library"


def test_languages_outside_table_1_come_from_the_library():
    ja = resolve("ja")
    assert (ja.name, ja.scripts, ja.group, ja.langid, ja.table1) == (
        "Japanese",
        ("Hani", "Hira", "Kana"),
        "X",
        "ja",
        None,
    )
    tl = resolve("tl")
    assert (tl.name, tl.scripts, tl.group, tl.langid) == ("Tagalog", ("Latn",), "X", "tl")
    assert resolve("ko").scripts == ("Hang", "Hani")
    # Hawaiian: known to CLDR, not to py3langid -> no language-ID code (translate counts the check as not run).
    pt_br = resolve("pt-BR")  # a regional variant: the language's py3langid code
    assert (pt_br.name, pt_br.scripts, pt_br.langid) == ("Portuguese (Brazil)", ("Latn",), "pt")
    haw = resolve("haw")
    assert haw.name == "Hawaiian" and haw.scripts == ("Latn",) and haw.langid is None


def test_params_describe_or_override_a_language():
    xx = resolve("xx", {"name": "Klingon", "script": ["Latn", "Grek"], "group": "L", "langid": None})
    assert (xx.name, xx.scripts, xx.group, xx.langid, xx.origin) == ("Klingon", ("Latn", "Grek"), "L", None, "params")
    ja = resolve("ja", {"group": "M", "langid": "zh", "translate": {"limit": 3}})
    assert (ja.group, ja.langid, ja.scripts) == ("M", "zh", ("Hani", "Hira", "Kana"))


@pytest.mark.parametrize(
    ("code", "spec", "words"),
    [
        ("xx", None, ["unknown language code 'xx'", "add languages.xx.name", "languages.xx.script"]),
        ("xx", {"name": "Klingon"}, ["unknown language code 'xx'", "languages.xx.script"]),
        ("ja", {"script": "Fooo"}, ["languages.ja.script", "'Fooo' is not a Unicode script"]),
        ("ja", {"group": "Q"}, ["languages.ja.group = 'Q'", "'H', 'M', 'L', 'X'"]),
        ("ja", {"langid": "zz"}, ["languages.ja.langid = 'zz'", "auto, null"]),
        ("ja", {"name": "  "}, ["languages.ja.name"]),
        ("en", {"group": "H"}, ["languages.en.group", "source language"]),
    ],
)
def test_bad_language_descriptions_are_one_sentence(code, spec, words):
    with pytest.raises(ConfigError) as err:
        resolve(code, spec)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_params_keep_metadata_and_section_overrides_apart():
    raw = {
        "languages": {
            "vi": {"translate": {"limit": 40}},
            "ja": {},
            "xx": {"name": "Klingon", "script": "Latn", "group": "L", "translate": {"limit": 7}},
        },
        "translate": {"limit": 20},
    }
    params = Params(raw, "xx")
    assert params.section("translate").limit == 7
    assert Params(raw, "vi").section("translate").limit == 40
    assert Params(raw, "ja").section("translate").limit == 20
    # Params makes the described languages the ones every module sees.
    assert get_language("xx").name == "Klingon" and get_language("ja").group == "X"
    with pytest.raises(ConfigError, match=r"unknown key languages\.ja\.colour; a language may set name, script"):
        Params({"languages": {"ja": {"colour": "red"}}})
    with pytest.raises(UnknownLanguageError, match="add languages.zz.name"):
        Params({"languages": {"vi": {}, "zz": {"translate": {"limit": 3}}}}, "vi")


def test_report_groups_order_and_english_apart():
    Params({"languages": {"ja": {}, "en": {}, "vi": {}, "sw": {"group": "L"}, "bn": {}, "ru": {}, "tl": {}}})
    assert report_groups(["tl", "en", "bn", "ja", "vi", "ru", "sw"]) == [
        ("H", ["ru", "vi"]),
        ("L", ["bn", "sw"]),
        ("X", ["ja", "tl"]),
        ("EN", ["en"]),
    ]


def test_command_line_shows_what_the_pipeline_uses(tmp_path, capsys):
    from okapi.languages import main

    params = tmp_path / "params.yaml"
    params.write_text("languages: {ja: {}, xx: {name: Klingon, script: Latn, group: L, langid: null}, en: {}}\n")
    assert main(["--params", str(params)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[:3] for ln in lines] == [
        ["ja", "Japanese", "group X (Outside Table 1)"],
        ["xx", "Klingon", "group L (Low-Resource)"],
        ["en", "English", "group EN (Source language)"],
    ]
    assert "scripts Hani + Hira + Kana; py3langid ja" in lines[0] and "langid_unavailable" in lines[1]
    assert main(["zz", "--params", str(tmp_path / "none.yaml")]) == 2
    assert "add languages.zz.name" in capsys.readouterr().err
