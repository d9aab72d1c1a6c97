"""Which neurons and heads push the model toward an emotion, computed exactly from cached activations.

Neuron ``j`` of layer ``l`` writes ``z_j * W_down[:, j]``; its contribution along the emotion
direction ``v`` is ``z_j * <W_down[:, j], v>``, and these sum to the MLP output's projection.
Zeroing head ``h`` at the last token changes the residual after attention by a linear amount,
so every head's importance comes from the same cached pass, with no extra forward passes.
"""

from __future__ import annotations

import torch

from emo_core.arch import out_weight
from emo_core.models import ModelBundle


@torch.inference_mode()
def neuron_contributions(bundle: ModelBundle, mlp_post: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Per-prompt neuron contributions toward a direction, for every layer.

    Args:
        mlp_post: ``[n_prompts, n_layers, d_mlp]`` down-projection inputs at the last token.
        directions: ``[n_layers, d_model]`` unit direction of one emotion at ``resid_post``.

    Returns:
        ``[n_prompts, n_layers, d_mlp]`` contributions; sum over neurons = MLP output . direction.
    """
    adapter = bundle.adapter
    rows = []
    for layer in range(bundle.shape.n_layers):
        w_down = adapter.neuron_out_weight(layer).float().cpu()  # [d_model, d_mlp]
        beta = w_down.T @ directions[layer]  # [d_mlp]
        rows.append(mlp_post[:, layer] * beta)
    return torch.stack(rows, dim=1)


@torch.inference_mode()
def head_contributions(bundle: ModelBundle, attn_z: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Per-prompt direct write of every head along a direction: the head analogue of ``neuron_contributions``.

    Args:
        attn_z: ``[n_prompts, n_layers, n_heads * head_dim]`` o_proj inputs.
        directions: ``[n_layers, d_model]`` unit direction per layer.

    Returns:
        ``[n_prompts, n_layers, n_heads]``; sum over heads = (attention output - bias) . direction.
    """
    shape = bundle.shape
    rows = []
    for layer in range(shape.n_layers):
        w_o = out_weight(bundle.adapter.attn_out(layer)).float().cpu()  # [d_model, H*D]
        beta = (w_o.T @ directions[layer]).view(shape.n_heads, shape.head_dim)  # [H, D]
        heads = attn_z[:, layer].float().view(-1, shape.n_heads, shape.head_dim)
        rows.append((heads * beta).sum(dim=-1))
    return torch.stack(rows, dim=1)


def _norm_projection(bundle: ModelBundle, layer: int, h_mid: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``<MLP-input-norm(h_mid), direction>`` over the last axis (the paper's read-out at layer ``l``)."""
    norm = bundle.adapter.mlp_in_norm(layer)
    param = next(norm.parameters())
    normed = norm(h_mid.to(device=param.device, dtype=param.dtype)).float().cpu()
    return normed @ direction


@torch.inference_mode()
def head_importance(bundle: ModelBundle, resid_mid: torch.Tensor, attn_z: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Drop of the MLP-input projection on the direction when each head is zeroed, per prompt.

    Args:
        resid_mid: ``[n_prompts, n_layers, d_model]`` residual after attention at the last token.
        attn_z: ``[n_prompts, n_layers, n_heads * head_dim]`` o_proj inputs at the last token.
        directions: ``[n_layers, d_model]`` unit direction of one emotion at ``resid_mid``.

    Returns:
        ``[n_prompts, n_layers, n_heads]``: score with all heads minus score with head ``h`` zeroed.
    """
    adapter, shape = bundle.adapter, bundle.shape
    out = []
    for layer in range(shape.n_layers):
        module = adapter.attn_out(layer)
        param = next(module.parameters())
        z = attn_z[:, layer].to(device=param.device, dtype=param.dtype)  # [n, H*D]
        attn_out = module(z)  # [n, d_model]
        heads = z.view(z.shape[0], shape.n_heads, shape.head_dim)
        w_o = out_weight(module).view(shape.d_model, shape.n_heads, shape.head_dim).transpose(0, 1)  # [H, d_model, D]
        contributions = torch.einsum("nhd,hmd->nhm", heads, w_o)  # [n, H, d_model]
        ablated_out = attn_out[:, None] - contributions
        h_mid = resid_mid[:, layer].to(device=param.device, dtype=param.dtype)
        h_mid_ablated = (
            h_mid[:, None] - adapter.attn_residual_write(layer, attn_out)[:, None] + adapter.attn_residual_write(layer, ablated_out)
        )
        base = _norm_projection(bundle, layer, h_mid, directions[layer])  # [n]
        ablated = _norm_projection(bundle, layer, h_mid_ablated, directions[layer])  # [n, H]
        out.append(base[:, None] - ablated)
    return torch.stack(out, dim=1)
