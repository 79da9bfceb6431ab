"""teacher.embedded.weights: q8_0 -- the 8-bit copy of the embedded teacher's GGUF (okapi.gguf_convert), tested on a
tiny GGUF written here (a few tensors, tokenizer-like metadata)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from okapi import gguf_convert
from okapi.config import ConfigError, from_dict
from okapi.teacher import ChatRequest, TeacherConfig, cache_key


def _tiny_gguf(path):
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.block_count", 2)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_string("general.name", "tiny")
    writer.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_Q4_1))
    # Byte-level tokenizer pieces need not be valid UTF-8 one by one; they must come back byte for byte.
    pieces = [b"a", "\u0120b".encode(), b"<|pad|>", b"\xe2\x82"]
    writer.add_key_value("tokenizer.ggml.tokens", pieces, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
    writer.add_array("tokenizer.ggml.token_type", [1, 1, 3, 6])
    writer.add_tensor("norm.weight", rng.standard_normal(64).astype(np.float32))
    for name, rows in (("blk.0.ffn_up.weight", 8), ("token_embd.weight", 4)):
        values = rng.standard_normal((rows, 64)).astype(np.float32)
        writer.add_tensor(name, gguf.quants.quantize(values, Q.Q4_1), raw_dtype=Q.Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _strings(field):
    return [bytes(field.parts[i]) for i in field.data]


def test_q8_0_copy_keeps_metadata_and_values_within_the_8_bit_step(tmp_path):
    src = _tiny_gguf(tmp_path / "tiny.Q4_1.gguf")
    dst = tmp_path / "tiny.Q8_0.gguf"
    gguf_convert.convert(src, dst)
    a, b = gguf.GGUFReader(str(src)), gguf.GGUFReader(str(dst))
    assert _strings(b.fields["tokenizer.ggml.tokens"]) == _strings(a.fields["tokenizer.ggml.tokens"])
    assert _strings(b.fields["tokenizer.ggml.tokens"])[3] == b"\xe2\x82"
    for key in ("llama.block_count", "llama.rope.freq_base", "tokenizer.ggml.token_type"):
        assert [b.fields[key].parts[i].tolist() for i in b.fields[key].data] == [
            a.fields[key].parts[i].tolist() for i in a.fields[key].data
        ]
    assert bytes(b.fields["general.name"].parts[-1]) == b"tiny"
    assert b.fields["general.file_type"].parts[-1].tolist() == [int(gguf.LlamaFileType.MOSTLY_Q8_0)]
    assert [t.name for t in b.tensors] == [t.name for t in a.tensors]
    for old, new in zip(a.tensors, b.tensors, strict=True):
        assert list(new.shape) == list(old.shape)
        if old.tensor_type == Q.F32:
            assert new.tensor_type == Q.F32
            assert np.array_equal(np.asarray(new.data), np.asarray(old.data))
            continue
        assert new.tensor_type == Q.Q8_0
        x = gguf.quants.dequantize(old.data, old.tensor_type).reshape(-1, 32)
        y = gguf.quants.dequantize(new.data, new.tensor_type).reshape(-1, 32)
        # Q8_0: 32 values share one scale max|x| / 127, stored in fp16 (relative error <= 2^-11), so each value is
        # off by at most half a step plus |q| <= 127 times the scale's rounding, i.e. <= |x| * 2^-10 more.
        step = np.abs(x).max(axis=1, keepdims=True) / 127
        assert np.all(np.abs(y - x) <= 0.5 * step + np.abs(x) * 2**-10 + 1e-7)
        assert np.abs(y - x).max() > 0  # re-quantized, not copied


def test_requantized_is_made_once_deterministically_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("OKAPI_CACHE_DIR", str(tmp_path / "cache"))
    src = _tiny_gguf(tmp_path / "tiny.Q4_1.gguf")
    first = gguf_convert.requantized(src)
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.endswith(".Q8_0.gguf")
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left behind
    other = tmp_path / "again.gguf"
    gguf_convert.convert(src, other)
    assert other.read_bytes() == first.read_bytes()  # the same bytes every time

    def must_not_convert(*_args, **_kwargs):
        raise AssertionError("converted again although the copy is cached")

    monkeypatch.setattr(gguf_convert, "convert", must_not_convert)
    assert gguf_convert.requantized(src) == first


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OKAPI_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "broken.gguf"
    src.write_bytes(b"not a gguf file")
    with pytest.raises(Exception):  # noqa: B017 -- whatever the gguf reader raises on a broken file
        gguf_convert.requantized(src)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_embedded_weights_are_part_of_the_cache_key_and_checked():
    req = ChatRequest(key="k", messages=[{"role": "user", "content": "hi"}])
    q8 = from_dict(TeacherConfig, {"embedded": {"weights": "q8_0"}}, "teacher")
    q4 = from_dict(TeacherConfig, {"embedded": {"weights": "q4_1"}}, "teacher")
    assert cache_key(q8, req, 0) != cache_key(q4, req, 0)
    remote = {"backend": "openai", "base_url": "http://x.invalid/v1", "max_concurrency": 2}
    a = from_dict(TeacherConfig, {**remote, "embedded": {"weights": "q8_0"}}, "teacher")
    b = from_dict(TeacherConfig, {**remote, "embedded": {"weights": "q4_1"}}, "teacher")
    assert cache_key(a, req, 0) == cache_key(b, req, 0)  # a remote teacher does not load the embedded weights
    with pytest.raises(ConfigError, match=r"teacher\.embedded\.weights = 'f16' is invalid; allowed: 'q8_0', 'q4_1'"):
        from_dict(TeacherConfig, {"embedded": {"weights": "f16"}}, "teacher")


def test_a_failed_copy_stops_the_stage_with_one_sentence(tmp_path, monkeypatch):
    from okapi import llama_server

    monkeypatch.setenv("OKAPI_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    monkeypatch.setattr(llama_server, "smollm2_gguf_path", lambda: broken)
    assert llama_server.embedded_gguf("q4_1") == broken  # served as shipped: nothing to convert
    with pytest.raises(
        llama_server.EmbeddedServerError,
        match=r"could not make the q8_0 copy of broken\.gguf in .*"
        r"teacher\.embedded\.weights: q4_1",
    ):
        llama_server.embedded_gguf("q8_0")
