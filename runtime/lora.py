"""LoRA on a frozen denoiser through peft: attach (gaussian init: step 0 is the base model),
reset between instances, save and load as safetensors."""

from __future__ import annotations

from pathlib import Path

import torch

ADAPTER = "ruledsl"


def attach_lora(model: torch.nn.Module, targets, rank: int = 8, alpha: float | None = None) -> list[torch.nn.Parameter]:
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
            param.data = param.data.float()
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
    if hasattr(model, "peft_config"):  # peft's record of injected adapters: none are left
        del model.peft_config


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().clone() for name, param in model.named_parameters() if "lora_" in name and ADAPTER in name
    }


def load_lora_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise ValueError(
            f"LoRA weights do not fit this model (e.g. {missing[0]}): attach the same targets and rank first"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_lora(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata or {})


def load_lora(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
