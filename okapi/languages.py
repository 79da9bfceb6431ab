"""The language registry of the Okapi paper (Lai et al., 2023, Table 1).

Used to validate params, to group the report into high / medium / low resource languages and to pick the
script check of the translation validator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    cc_share: float  # percentage of CommonCrawl (Table 1, "CC Size (%)")
    category: str  # "H" (> 1 %), "M" (> 0.1 %), "L" (> 0.01 %)
    bloom: bool
    llama: bool
    script: str  # Unicode script a translation into this language is expected to use


# Table 1 of the paper, in its order. English is the source language and not a translation target.
_TABLE_1 = [
    ("en", "English", 45.8786, "H", True, True, "Latin"),
    ("ru", "Russian", 5.9692, "H", True, True, "Cyrillic"),
    ("de", "German", 5.8811, "H", True, True, "Latin"),
    ("zh", "Chinese", 4.8747, "H", True, False, "Han"),
    ("fr", "French", 4.7254, "H", True, True, "Latin"),
    ("es", "Spanish", 4.4690, "H", True, True, "Latin"),
    ("it", "Italian", 2.5712, "H", True, True, "Latin"),
    ("nl", "Dutch", 2.0585, "H", True, True, "Latin"),
    ("vi", "Vietnamese", 1.0299, "H", True, False, "Latin"),
    ("id", "Indonesian", 0.7991, "M", True, False, "Latin"),
    ("ar", "Arabic", 0.6658, "M", True, False, "Arabic"),
    ("hu", "Hungarian", 0.6093, "M", True, True, "Latin"),
    ("ro", "Romanian", 0.5637, "M", True, True, "Latin"),
    ("da", "Danish", 0.4301, "M", True, True, "Latin"),
    ("sk", "Slovak", 0.3777, "M", True, True, "Latin"),
    ("uk", "Ukrainian", 0.3304, "M", True, True, "Cyrillic"),
    ("ca", "Catalan", 0.2314, "M", True, True, "Latin"),
    ("sr", "Serbian", 0.2205, "M", True, True, "Cyrillic"),
    ("hr", "Croatian", 0.1979, "M", True, True, "Latin"),
    ("hi", "Hindi", 0.1588, "M", True, False, "Devanagari"),
    ("bn", "Bengali", 0.0930, "L", True, False, "Bengali"),
    ("ta", "Tamil", 0.0446, "L", True, False, "Tamil"),
    ("ne", "Nepali", 0.0304, "L", True, False, "Devanagari"),
    ("ml", "Malayalam", 0.0222, "L", True, False, "Malayalam"),
    ("mr", "Marathi", 0.0213, "L", True, False, "Devanagari"),
    ("te", "Telugu", 0.0183, "L", True, False, "Telugu"),
    ("kn", "Kannada", 0.0122, "L", True, False, "Kannada"),
]

REGISTRY: dict[str, Language] = {row[0]: Language(*row) for row in _TABLE_1}
SOURCE_LANGUAGE = "en"
TARGET_LANGUAGES: tuple[str, ...] = tuple(code for code in REGISTRY if code != SOURCE_LANGUAGE)
CATEGORY_NAMES = {"H": "High-Resource", "M": "Medium-Resource", "L": "Low-Resource"}


class UnknownLanguageError(ValueError):
    pass


def get_language(code: str) -> Language:
    """Return the registry entry for a target language, or stop with the list of valid codes."""
    if code not in REGISTRY or code == SOURCE_LANGUAGE:
        raise UnknownLanguageError(
            f"unknown language code {code!r}; valid target languages (paper Table 1) are: "
            + ", ".join(TARGET_LANGUAGES)
        )
    return REGISTRY[code]


def group_of(code: str) -> str:
    return get_language(code).category
