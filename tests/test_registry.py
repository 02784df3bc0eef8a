"""normlab.registry: names, options, factories and their error messages."""
import pytest

from normlab import layers, registry
from normlab.registry import NORM_NAMES, make_norm

EXPECTED = {
    "none", "batch", "layer", "instance", "group", "rms", "ghost_batch", "batch_renorm", "frozen_batch",
    "l1_batch", "l2_batch", "linf_batch", "noisy_batch", "frn", "evonorm_b0", "evonorm_s0", "switchable",
    "local_response", "weight", "weight_std", "spectral",
}


def test_every_requested_norm_is_registered():
    assert set(NORM_NAMES) == EXPECTED
    assert len(NORM_NAMES) == len(set(NORM_NAMES))


def test_unknown_norm_lists_all_valid_names():
    with pytest.raises(ValueError) as e:
        make_norm("batchnorm")
    msg = str(e.value)
    assert "'batchnorm'" in msg
    for name in NORM_NAMES:
        assert name in msg


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError) as e:
        make_norm("group", groups=8)
    msg = str(e.value)
    assert "'group'" in msg and "'groups'" in msg
    for opt in ("num_groups", "group_size", "epsilon"):
        assert opt in msg
    with pytest.raises(ValueError, match=r"valid choices: \(none\)"):
        make_norm("none", epsilon=1e-3)


def test_options_defaults_and_soft_axis_name():
    f = make_norm("l1_batch", momentum=0.5)
    assert f.options == {"p": 1, "momentum": 0.5}
    assert make_norm("linf_batch").options == {"p": "inf", "momentum": 0.9}
    assert make_norm("l2_batch", p=1).options["p"] == 1  # explicit options override entry defaults
    # axis_name is accepted by every norm and kept only where the layer has cross-device statistics
    assert make_norm("layer", axis_name="batch").options == {"epsilon": 1e-5}
    assert make_norm("batch", axis_name="batch").options == {"momentum": 0.9, "axis_name": "batch"}
    m = make_norm("group", num_groups=4, epsilon=1e-3)()
    assert isinstance(m, layers.GroupNorm) and m.num_groups == 4 and m.epsilon == 1e-3


def test_factory_properties():
    assert make_norm("weight").reparam == "weight"
    assert make_norm("weight_std").reparam == "weight_std"
    assert make_norm("spectral").reparam == "spectral"
    for name in ("weight", "weight_std", "spectral", "none"):
        assert make_norm(name).layer is layers.Identity
    for name in NORM_NAMES:
        f = make_norm(name)
        assert f.replaces_activation == (name in ("frn", "evonorm_b0", "evonorm_s0")), name
        # frozen BN *reads* batch_stats but never updates them, so it is not in this set
        stateful = {"batch", "ghost_batch", "batch_renorm", "l1_batch", "l2_batch", "linf_batch", "noisy_batch",
                    "evonorm_b0", "switchable", "spectral"}
        assert f.uses_batch_stats == (name in stateful), name
        if name not in ("weight", "weight_std", "spectral"):
            assert f.reparam is None


def test_valid_options_and_entry():
    assert "virtual_batch_size" in registry.valid_options("ghost_batch")
    assert registry.get_norm_entry("batch").layer is layers.BatchNorm
    with pytest.raises(ValueError, match="unknown norm .nope. .*valid choices: none, batch"):
        registry.valid_options("nope")


def test_unknown_norm_suggests_the_close_name_and_lists_only_accepted_options():
    with pytest.raises(ValueError, match=r"unknown norm 'bn' \(did you mean 'batch'\?\)"):
        make_norm("bn")
    with pytest.raises(ValueError, match=r"unknown option 'num_grups' \(did you mean 'num_groups'\?\)"):
        make_norm("group", num_grups=2)
    for name in ("batch", "layer", "group"):  # flax's fields accepted only at their default are not listed
        assert not {"axis_index_groups", "force_float32_reductions"} & set(registry.valid_options(name))
