"""A model folder -> its VideoGenerator, on a device and in a dtype: what `--model` accepts.

    generator = load_generator("path/to/Wan2.1-I2V-14B-480P-Diffusers", device="cuda", dtype="bfloat16")

A folder is recognised by the `_class_name` in its `model_index.json` (a diffusers pipeline in
the `save_pretrained` layout) or, failing that, its `config.json` (a single model, like the
reasoner). `GENERATORS` maps that name to the adapter class ("module:Class", imported only when
used); an adapter added to the runtime adds its entry here (or calls `register_generator`).
Every adapter class has `from_pretrained(path, device=..., dtype=..., **kwargs)`.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch

from ruledsl.runtime.generators import DEFAULT_REASONER, VideoGenerator

GENERATORS: dict[str, str] = {
    "ReasonerModel": "ruledsl.runtime.generators:ReasonerGenerator",
    "LatentReasonerModel": "ruledsl.runtime.generators:ReasonerGenerator",
    "WanImageToVideoPipeline": "ruledsl.runtime.wan:WanI2VGenerator",
    "CogVideoXImageToVideoPipeline": "ruledsl.runtime.cogvideox:CogVideoXI2VGenerator",
    "LTXImageToVideoPipeline": "ruledsl.runtime.ltx:LTXI2VGenerator",
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class GeneratorLoadError(ValueError):
    """The model folder, device or dtype cannot be used (the message says which and why)."""


def register_generator(class_name: str, target: str | type[VideoGenerator]) -> None:
    """Make folders whose `_class_name` is `class_name` load with `target` (a class or "module:Class")."""
    GENERATORS[class_name] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def supported() -> str:
    return ", ".join(GENERATORS)


def model_class_name(path: Path) -> str:
    """The `_class_name` that identifies a model folder (model_index.json first, then config.json)."""
    if not path.is_dir():
        raise GeneratorLoadError(f"{path}: no such folder")
    for name in ("model_index.json", "config.json"):
        file = path / name
        if file.exists():
            try:
                class_name = json.loads(file.read_text()).get("_class_name")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
                raise GeneratorLoadError(f"{file}: not a JSON object ({error})") from None
            if not isinstance(class_name, str):
                raise GeneratorLoadError(f"{file}: no `_class_name`, so the model type is unknown")
            return class_name
    raise GeneratorLoadError(
        f"{path}: neither model_index.json (a diffusers pipeline) nor config.json (a model) is there; "
        f"supported: {supported()}"
    )


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None: cuda when available, else cpu. A device that is not there is an error, not a silent fallback."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise GeneratorLoadError(f"device {device!r}: not a torch device ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise GeneratorLoadError(f"device {device!r}: no CUDA device is available to torch {torch.__version__}")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise GeneratorLoadError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise GeneratorLoadError(f"device {device!r}: MPS is not available")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None = None) -> torch.dtype:
    """The frozen model's dtype: float32 (default), bfloat16 or float16. LoRA weights stay float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise GeneratorLoadError(f"dtype {dtype}: choose from {', '.join(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise GeneratorLoadError(f"dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    return DTYPES[dtype]


def adapter_for(path: Path) -> type[VideoGenerator]:
    class_name = model_class_name(path)
    target = GENERATORS.get(class_name)
    if target is None:
        raise GeneratorLoadError(
            f"{path}: `{class_name}` is not supported; a model is a reasoner folder or a diffusers "
            f"image-to-video pipeline folder (save_pretrained layout), by `_class_name`: {supported()}"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def model_folder(path: str | Path | None = None) -> Path:
    """The folder a model option names: `path`, else $RULEDSL_REASONER, else the built-in reasoner."""
    return Path(path) if path is not None else Path(os.environ.get("RULEDSL_REASONER") or DEFAULT_REASONER)


def load_generator(
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    steps: int | None = None,
    size: int | None = None,
    **kwargs,
) -> VideoGenerator:
    """The generator for a model folder (None: the built-in reasoner, or $RULEDSL_REASONER) on
    `device` (None: cuda when available, else cpu) with its frozen weights in `dtype` (default
    float32). `steps` (sampling steps), `size` (frame size: v2 reasoners only, see
    ReasonerGenerator) and `kwargs` go to the adapter; None keeps its default."""
    folder = model_folder(path)
    cls = adapter_for(folder)
    options = dict(kwargs, device=resolve_device(device), dtype=resolve_dtype(dtype))
    if steps is not None:
        options["steps"] = steps
    if size is not None:
        if model_class_name(folder) != "LatentReasonerModel":
            raise GeneratorLoadError(
                f"{folder}: a frame size applies to a v2 reasoner (LatentReasonerModel) only;"
                f" `{model_class_name(folder)}` samples at its own resolution"
            )
        options["size"] = size
    try:
        return cls.from_pretrained(folder, **options)
    except ValueError as error:  # a size off the model's unit
        if size is None:
            raise
        raise GeneratorLoadError(f"{folder}: {error}") from None
