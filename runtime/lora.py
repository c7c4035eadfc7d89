"""LoRA on a frozen denoiser through peft: attach (gaussian init: step 0 is the base model),
reset between instances, its state through peft's state-dict helpers, files as safetensors.

State dicts are peft's format (`get_peft_model_state_dict`): module path + `lora_A.weight` /
`lora_B.weight`, without the adapter name, the layout diffusers' LoRA loaders also read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ADAPTER = "ruledsl"


def attach_lora(model: torch.nn.Module, targets, rank: int = 8, alpha: int | None = None) -> list[torch.nn.Parameter]:
    """Freeze `model`, add a fresh fp32 LoRA on modules whose names end with `targets`; return its parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    detach_lora(model)
    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=list(targets), init_lora_weights="gaussian")
    try:
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as error:  # peft: "Target modules ... not found in the base model"
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n})
        raise ValueError(
            f"no module of the model matches LoRA targets {list(targets)}; module names end with e.g. "
            f"{', '.join(names[:20])}"
        ) from error
    params = []
    for name, param in model.named_parameters():
        if "lora_" in name and f".{ADAPTER}" in name:
            param.data = param.data.float()  # fp32 even on a bf16/fp16 base (peft casts the input to it)
            param.requires_grad_(True)
            params.append(param)
    return params


def detach_lora(model: torch.nn.Module) -> None:
    """Remove our adapter: every LoRA-wrapped layer is replaced by its original base layer."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict):  # what inject_adapter_in_model recorded; a later attach starts clean
        configs.pop(ADAPTER, None)
        if not configs:
            del model.peft_config


@contextmanager
def lora_disabled(model: torch.nn.Module) -> Iterator[None]:
    """Run `model` as the frozen base inside the block; the attached LoRA (weights, optimizer state,
    trainability) is back as it was afterwards. Through peft's `enable_adapters` on each LoRA layer."""
    from peft.tuners.lora import LoraLayer

    layers = [module for module in model.modules() if isinstance(module, LoraLayer) and not module.disable_adapters]
    flags = [(param, param.requires_grad) for layer in layers for param in layer.parameters()]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for param, flag in flags:  # enable_adapters flips trainability; put back exactly what was
            param.requires_grad_(flag)


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the attached LoRA's weights (peft's state-dict format); empty when none is attached."""
    from peft import get_peft_model_state_dict

    if not _attached(model):
        return {}
    return {
        name: value.detach().clone() for name, value in get_peft_model_state_dict(model, adapter_name=ADAPTER).items()
    }


def load_lora_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (from `lora_state` or a lora.safetensors) into the LoRA attached to `model`."""
    from peft import set_peft_model_state_dict

    if not _attached(model):
        raise ValueError("no LoRA is attached to this model: attach_lora with the same targets and rank first")
    expected = set(lora_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        example = (unexpected or missing)[0]
        raise ValueError(
            f"LoRA weights do not fit this model ({len(unexpected)} unknown, {len(missing)} missing, e.g. "
            f"{example}): attach the same targets and rank first"
        )
    try:
        set_peft_model_state_dict(model, state, adapter_name=ADAPTER)
    except RuntimeError as error:  # torch: size mismatch (another rank)
        raise ValueError(f"LoRA weights do not fit this model (another rank?): {error}") from None


def attach_saved_lora(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Attach a LoRA shaped like `state` (a run's lora.safetensors: its modules and rank, alpha = rank
    as `attach_lora` makes it) and load its weights; ValueError if it is not a LoRA of this model."""
    if not state or not all(".lora_A." in key or ".lora_B." in key for key in state):
        raise ValueError("not a LoRA state dict (expected peft keys: <module>.lora_A.weight / <module>.lora_B.weight)")
    modules = sorted({key.split(".lora_", 1)[0] for key in state})
    ranks = {value.shape[0] for key, value in state.items() if ".lora_A." in key}
    if len(ranks) != 1:
        raise ValueError(f"the LoRA's modules have different ranks ({sorted(ranks)}); expected one")
    try:
        attach_lora(model, modules, ranks.pop())
    except ValueError as error:
        raise ValueError(f"the LoRA does not fit this model: {error}") from None
    load_lora_state(model, state)


def _attached(model: torch.nn.Module) -> bool:
    configs = getattr(model, "peft_config", None)
    return isinstance(configs, dict) and ADAPTER in configs


def save_lora(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata or {})


def load_lora(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
