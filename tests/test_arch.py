import pytest

import emo_core as ec
from emo_core.arch import spec_for
from tests.conftest import FAMILY_CONFIGS


def test_sizes_come_from_the_model(tiny: ec.ModelBundle) -> None:
    shape = tiny.shape
    assert (shape.n_layers, shape.n_heads, shape.d_mlp, shape.d_model) == (3, 4, 48, 32)
    expected_head_dim = {"gemma": 16, "gemma2": 16, "qwen3": 8}.get(tiny.model_type, 8)
    assert shape.head_dim == expected_head_dim
    assert tiny.adapter.head_out_weight(0, 1).shape == (32, expected_head_dim)
    assert tiny.adapter.neuron_out_weight(2).shape == (32, 48)


def test_every_family_has_an_entry() -> None:
    assert set(FAMILY_CONFIGS) <= set(ec.ARCH_SPECS)


def test_unknown_family_says_what_is_supported() -> None:
    with pytest.raises(ec.UnsupportedArchitectureError, match="not supported yet.*llama"):
        spec_for("bert")


def test_layers_accept_negative_indices_and_reject_out_of_range(tiny: ec.ModelBundle) -> None:
    assert tiny.adapter.normalize_layer(-1) == 2
    with pytest.raises(ec.InvalidInterventionError, match="layers 0 to 2"):
        tiny.adapter.normalize_layer(3)


def test_site_names_are_the_canonical_ones() -> None:
    assert ec.SITES == ("resid_pre", "resid_mid", "resid_post", "attn_z", "mlp_post")
