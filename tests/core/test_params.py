"""params.yaml, the profiles and the config dataclasses: one home per value (DESIGN, "House style").

The dataclasses hold types, ranges and documentation; params.yaml and the profiles under configs/ hold values.
These tests walk the dataclasses, so fields other engineers add are covered without editing this file."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path

import pytest
import yaml
from stagekit import write_params

from okapi.config import ConfigError, from_dict
from okapi.params import GLOBAL_SECTIONS, SECTIONS, config_class, load_params

ROOT = Path(__file__).resolve().parents[2]
PROFILES = [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("**/params.yaml"))]


def _config_classes() -> dict[str, type]:
    """Every config dataclass by a readable name, nested ones (teacher.embedded) included."""
    out: dict[str, type] = {}

    def walk(name: str, cls: type) -> None:
        out[name] = cls
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(f"{name}.{f.name}", tp)

    for section in (*SECTIONS, *GLOBAL_SECTIONS):
        walk(section, config_class(section))
    return out


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # profiles with an OpenAI teacher validate without a real key


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_profile_validates_with_no_unknown_key(profile):
    # validate_all builds every section and every language's overrides; from_dict rejects unknown keys.
    load_params(profile).validate_all()


@pytest.mark.parametrize("section", [*SECTIONS, *GLOBAL_SECTIONS])
def test_documented_defaults_equal_params_yaml(section):
    """A dataclass default is documented as the embedded default: it must be the value params.yaml sets."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    cls = config_class(section)
    default = cls()
    for key, value in (raw.get(section) or {}).items():
        from_yaml = getattr(from_dict(cls, {key: value}, section), key)
        assert from_yaml == getattr(default, key), (
            f"{section}.{key}: params.yaml says {value!r}, the dataclass default is {getattr(default, key)!r}"
        )


def _fields_without_docstring(cls: type) -> list[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    missing = []
    for stmt, nxt in zip(body, [*body[1:], None], strict=True):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            documented = (
                isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
            )
            if not documented:
                missing.append(stmt.target.id)
    return missing


@pytest.mark.parametrize("name,cls", sorted(_config_classes().items()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_config_field_has_a_docstring(name, cls):
    assert not _fields_without_docstring(cls), f"{name}: fields without a docstring under them"


def test_literal_choices_are_checked_on_load():
    with pytest.raises(ConfigError, match=r"parameter sft\.lr_scheduler_type = 'wavy' is invalid; allowed: 'cosine'"):
        from_dict(config_class("sft"), {"lr_scheduler_type": "wavy"}, "sft")


def _params(tmp_path, **sections):
    return write_params(tmp_path, **sections)


@pytest.mark.parametrize(
    "section,key,value,expected",
    [
        ("rm", "learning_rate", 2.0, "parameter rm.learning_rate = 2.0 is invalid"),
        ("sft_full", "batch_size", 0, "parameter sft_full.batch_size = 0 is invalid"),
        ("sft", "batch_size", "eight", "parameter sft.batch_size = 'eight' must be an integer"),
        ("rm", "bogus", 1, "unknown parameter rm.bogus; allowed keys in rm:"),
    ],
)
def test_errors_name_the_key_as_the_file_spells_it(tmp_path, section, key, value, expected):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    path = _params(tmp_path, **{section: {**raw[section], key: value}})
    with pytest.raises(ConfigError) as err:
        load_params(path, sections=(section,))
    assert str(err.value).startswith(expected), err.value


def test_nested_and_language_override_errors_name_their_own_key(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    path = _params(tmp_path, teacher={**raw["teacher"], "embedded": {"n_ctx": 10}})
    with pytest.raises(ConfigError, match=r"^parameter teacher\.embedded\.n_ctx = 10 is invalid"):
        load_params(path, sections=("teacher",))

    path = _params(tmp_path, languages={"vi": {"rm": {"learning_rate": 5.0}}, "es": {}})
    with pytest.raises(ConfigError, match=r"^parameter languages\.vi\.rm\.learning_rate = 5\.0 is invalid"):
        load_params(path, lang="vi", sections=("rm",))
    load_params(path, lang="es", sections=("rm",))  # the other language is untouched
    # A bad top-level value keeps its own name even when a language overrides other keys of the section.
    path = _params(tmp_path, rm={**raw["rm"], "eval_fraction": 1.5}, languages={"vi": {"rm": {"seed": 3}}})
    with pytest.raises(ConfigError, match=r"^parameter rm\.eval_fraction = 1\.5 is invalid"):
        load_params(path, lang="vi", sections=("rm",))


def test_unknown_sections_are_rejected_with_the_allowed_ones(tmp_path):
    path = _params(tmp_path, rewards={"learning_rate": 1e-5})
    with pytest.raises(ConfigError, match=r"unknown section 'rewards'; allowed sections: .*\brm\b"):
        load_params(path)
    path = _params(tmp_path, languages={"vi": {"reward": {}}})
    with pytest.raises(ConfigError, match=r"unknown key languages\.vi\.reward; a language may set"):
        load_params(path)


def test_validating_the_ppo_section_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from okapi.params import load_params; "
        "load_params('params.yaml', lang='vi', sections=('ppo', 'teacher', 'released', 'evaluate')).report; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
