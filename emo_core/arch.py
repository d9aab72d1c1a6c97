"""Architecture adapter: the one place that knows where each model family keeps its parts.

Canonical site names follow TransformerLens:

* ``resid_pre``  input of decoder layer ``l``                        ``[batch, pos, d_model]``
* ``resid_mid``  residual after attention (input of the MLP norm)    ``[batch, pos, d_model]``
* ``resid_post`` output of decoder layer ``l``                       ``[batch, pos, d_model]``
* ``attn_z``     input of the attention output projection (heads)    ``[batch, pos, n_heads * head_dim]``
* ``mlp_post``   input of the MLP down projection (neurons)          ``[batch, pos, d_mlp]``

Adding a family is adding an entry to ``ARCH_SPECS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from emo_core.errors import InvalidInterventionError, UnsupportedArchitectureError

Site = Literal["resid_pre", "resid_mid", "resid_post", "attn_z", "mlp_post"]
SITES: tuple[Site, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_z", "mlp_post")


@dataclass(frozen=True)
class ArchSpec:
    """Module paths of one family; all but ``layers`` and ``final_norm`` are relative to a layer."""

    layers: str
    attn: str
    attn_out: str
    mlp_out: str
    mlp_in_norm: str
    final_norm: str
    attn_out_norm: str | None = None  # a norm between o_proj and the residual add (Gemma2)


_LLAMA_LIKE = ArchSpec(
    layers="model.layers",
    attn="self_attn",
    attn_out="self_attn.o_proj",
    mlp_out="mlp.down_proj",
    mlp_in_norm="post_attention_layernorm",
    final_norm="model.norm",
)

ARCH_SPECS: dict[str, ArchSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    # Gemma2 normalises the attention output before the residual add; the MLP norm is the next one.
    "gemma2": ArchSpec(
        layers="model.layers",
        attn="self_attn",
        attn_out="self_attn.o_proj",
        mlp_out="mlp.down_proj",
        mlp_in_norm="pre_feedforward_layernorm",
        final_norm="model.norm",
        attn_out_norm="post_attention_layernorm",
    ),
    "gpt2": ArchSpec(
        layers="transformer.h",
        attn="attn",
        attn_out="attn.c_proj",
        mlp_out="mlp.c_proj",
        mlp_in_norm="ln_2",
        final_norm="transformer.ln_f",
    ),
}


@dataclass(frozen=True)
class ModelShape:
    """Sizes a user sees and indices are checked against."""

    n_layers: int
    n_heads: int
    head_dim: int
    d_mlp: int
    d_model: int

    def site_width(self, site: Site) -> int:
        """Width of the last axis at ``site``."""
        if site == "attn_z":
            return self.n_heads * self.head_dim
        if site == "mlp_post":
            return self.d_mlp
        return self.d_model


def spec_for(model_type: str) -> ArchSpec:
    """The adapter entry of a ``config.model_type``, or a clear error naming the supported ones."""
    try:
        return ARCH_SPECS[model_type]
    except KeyError:
        supported = ", ".join(sorted(ARCH_SPECS))
        raise UnsupportedArchitectureError(
            f"Model family '{model_type}' is not supported yet; choose a model of one of these families: {supported}."
        ) from None


def out_weight(module: nn.Module) -> torch.Tensor:
    """Weight of a projection as ``[out_features, in_features]`` (GPT-2's Conv1D stores it transposed)."""
    if isinstance(module, nn.Linear):
        return module.weight
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        raise UnsupportedArchitectureError(f"Projection {type(module).__name__} has no 2-D weight; the adapter cannot read it.")
    return weight.T


class Adapter:
    """Resolves a loaded model's parts and sizes through its ``ArchSpec``."""

    def __init__(self, model: nn.Module, spec: ArchSpec | None = None) -> None:
        config = model.config.get_text_config()
        self.model = model
        self.spec = spec or spec_for(config.model_type)
        self.layers: nn.ModuleList = model.get_submodule(self.spec.layers)
        n_heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
        attn_in = out_weight(self.attn_out(0)).shape[1]
        if n_heads * head_dim != attn_in:
            raise UnsupportedArchitectureError(
                f"{n_heads} heads of {head_dim} do not match the {attn_in} inputs of the attention "
                "output projection; this checkpoint needs its own adapter entry."
            )
        self.shape = ModelShape(
            n_layers=len(self.layers),
            n_heads=n_heads,
            head_dim=head_dim,
            d_mlp=out_weight(self.mlp_out(0)).shape[1],
            d_model=config.hidden_size,
        )

    def layer(self, index: int) -> nn.Module:
        return self.layers[index]

    def attn(self, index: int) -> nn.Module:
        return self.layers[index].get_submodule(self.spec.attn)

    def attn_out(self, index: int) -> nn.Module:
        return self.layers[index].get_submodule(self.spec.attn_out)

    def mlp_out(self, index: int) -> nn.Module:
        return self.layers[index].get_submodule(self.spec.mlp_out)

    def mlp_in_norm(self, index: int) -> nn.Module:
        return self.layers[index].get_submodule(self.spec.mlp_in_norm)

    def attn_residual_write(self, index: int, attn_out: torch.Tensor) -> torch.Tensor:
        """What the attention output adds to the residual stream (itself, or its norm on Gemma2)."""
        if self.spec.attn_out_norm is None:
            return attn_out
        return self.layers[index].get_submodule(self.spec.attn_out_norm)(attn_out)

    def final_norm(self) -> nn.Module:
        return self.model.get_submodule(self.spec.final_norm)

    def head_out_weight(self, layer: int, head: int) -> torch.Tensor:
        """Columns of the attention output projection that head ``head`` writes through: ``[d_model, head_dim]``."""
        start = head * self.shape.head_dim
        return out_weight(self.attn_out(layer))[:, start : start + self.shape.head_dim]

    def neuron_out_weight(self, layer: int) -> torch.Tensor:
        """Down-projection as ``[d_model, d_mlp]``: column ``j`` is what neuron ``j`` writes."""
        return out_weight(self.mlp_out(layer))

    def normalize_layer(self, layer: int) -> int:
        """Accept negative indices once, at the API edge; reject out-of-range ones clearly."""
        n = self.shape.n_layers
        if not -n <= layer < n:
            raise InvalidInterventionError(f"Layer {layer} does not exist; this model has layers 0 to {n - 1}.")
        return layer % n
