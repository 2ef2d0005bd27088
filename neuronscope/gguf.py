"""GGUF checkpoints: converted once into an ordinary Hugging Face folder in the neuronscope cache.

``convert_gguf(path)`` dequantises a GGUF file with transformers (which needs the ``gguf``
package), writes the model and its tokenizer into a temporary folder, records every file's
size and SHA-256 in ``manifest.json``, then renames the folder into place (one atomic
rename). A later call finds the folder by the GGUF file's own SHA-256, checks every file
against the manifest and reuses it; a folder that fails the check is converted again.

Example:
    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "model.gguf"
    >>> _ = bad.write_bytes(b"not a gguf file")
    >>> try:
    ...     check_gguf(bad)
    ... except ValueError as error:
    ...     print(str(error).split(":")[0])
    not a GGUF file
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from neuronscope.atomic import atomic_write_text
from neuronscope.cache import cache_dir

__all__ = ["CONVERSION_VERSION", "INSTALL_HINT", "cached_conversion", "check_gguf", "convert_gguf",
           "gguf_architecture", "is_gguf", "supported_gguf_architectures"]

CONVERSION_VERSION = 1
MAGIC = b"GGUF"
INSTALL_HINT = 'pip install "neuronscope[real]"   (installs gguf and transformers)'
_CHUNK = 1 << 22


def is_gguf(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file that starts with the GGUF magic bytes."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == MAGIC


def check_gguf(path: str | os.PathLike) -> Path:
    """The resolved path of an existing GGUF file; ``FileNotFoundError``/``ValueError`` otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist")
    if not path.is_file() or not is_gguf(path):
        raise ValueError(f"not a GGUF file: {str(path)!r} does not start with the bytes {MAGIC!r}")
    return path.resolve()


def _require_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise ImportError(f"reading GGUF files needs the 'gguf' package: {INSTALL_HINT}") from None
    return gguf


def supported_gguf_architectures() -> tuple[str, ...]:
    """GGUF architectures that transformers can dequantise into a Hugging Face model."""
    try:
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    except ImportError:
        raise ImportError(f"converting GGUF files needs transformers: {INSTALL_HINT}") from None
    return tuple(sorted(set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}))


def gguf_architecture(path: str | os.PathLike) -> str:
    """The ``general.architecture`` entry of a GGUF file's metadata (e.g. ``"llama"``)."""
    gguf = _require_gguf()
    reader = gguf.GGUFReader(str(check_gguf(path)))
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ValueError(f"GGUF file {str(path)!r} has no general.architecture entry")
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_for(path: Path, cache: str | os.PathLike | None, dtype: torch.dtype) -> Path:
    key = hashlib.sha256(json.dumps([_sha256(path), CONVERSION_VERSION, str(dtype)]).encode())
    root = Path(cache) if cache is not None else cache_dir()
    return root / "gguf" / f"{path.stem}-{key.hexdigest()[:16]}"


def _verified(folder: Path) -> bool:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return False
    if not files or "config.json" not in files:
        return False
    for name, entry in files.items():
        file = folder / name
        if not file.is_file() or file.stat().st_size != entry.get("size"):
            return False
    return all(_sha256(folder / name) == entry.get("sha256") for name, entry in files.items())


def cached_conversion(path: str | os.PathLike, *, cache: str | os.PathLike | None = None,
                      dtype: torch.dtype = torch.float32) -> Path | None:
    """The verified cached folder converted from ``path``, or None (missing or failing the check)."""
    folder = _folder_for(check_gguf(path), cache, dtype)
    return folder if _verified(folder) else None


def _write(path: Path, target: Path, dtype: torch.dtype) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    model.hf_quantizer = None  # the weights are dequantised; save_pretrained refuses otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(target)
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(target.iterdir()) if p.is_file()}
    record = {"format": "neuronscope.gguf/1", "conversion_version": CONVERSION_VERSION,
              "source": path.name, "source_sha256": _sha256(path), "dtype": str(dtype),
              "files": files}
    atomic_write_text(target / "manifest.json", json.dumps(record, indent=1))


def convert_gguf(path: str | os.PathLike, *, cache: str | os.PathLike | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """A verified Hugging Face folder holding ``path`` dequantised (converted once, then reused).

    ``cache``: the cache root (default :func:`neuronscope.cache.cache_dir`); the folder is
    ``<cache>/gguf/<stem>-<key>``. Raises ``FileNotFoundError``/``ValueError`` for a missing or
    non-GGUF file or an architecture transformers cannot convert, ``ImportError`` (with the
    install command) when ``gguf`` or transformers is missing.
    """
    path = check_gguf(path)
    folder = _folder_for(path, cache, dtype)
    if _verified(folder):
        return folder
    architecture = gguf_architecture(path)
    supported = supported_gguf_architectures()
    if architecture not in supported:
        raise ValueError(f"GGUF file {path.name!r} holds a {architecture!r} model; transformers can "
                         f"convert only {list(supported)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write(path, temporary, dtype)
        if folder.exists():  # a stale folder that failed verification
            stale = folder.with_name(f".{folder.name}.{os.getpid()}.stale")
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder
