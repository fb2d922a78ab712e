import random

import pytest
import torch

from hypotune.config import RunConfig
from hypotune.errors import ArchitectureError, ConfigError
from hypotune.fashion.config import ModelConfig, Settings
from hypotune.fashion.layers import ACTIVATIONS, DROPOUTS, NORMS, POOLS
from hypotune.fashion.model import build_model, check_fits, check_model, flop_count, model_size, param_count


def forward_shape(config: ModelConfig) -> tuple[int, ...]:
    model = build_model(config)
    return tuple(model(torch.zeros(2, 1, 28, 28)).shape)


def test_course_baseline_has_exactly_93130_parameters():
    assert param_count(build_model(ModelConfig())) == 93_130


SMALL = dict(depth=2, width=8, pool_after=(1, 2), pool_size=2, head="gap", head_hidden=())


@pytest.mark.parametrize("norm", list(NORMS))
def test_every_norm_builds(norm):
    assert forward_shape(ModelConfig(**SMALL, norm=norm, groups=4)) == (2, 10)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_builds(activation):
    assert forward_shape(ModelConfig(**SMALL, activation=activation)) == (2, 10)


@pytest.mark.parametrize("pool", list(POOLS))
def test_every_pool_builds(pool):
    assert forward_shape(ModelConfig(**SMALL, pool=pool)) == (2, 10)


@pytest.mark.parametrize("kind", list(DROPOUTS))
def test_every_dropout_kind_builds(kind):
    model = build_model(ModelConfig(**SMALL, dropout=0.5, dropout_kind=kind))
    assert isinstance(model.features.block1.body.dropout, DROPOUTS[kind])


def test_block_order_is_respected():
    model = build_model(
        ModelConfig(
            **SMALL | {"depth": 1, "pool_after": (1,)},
            norm="batch",
            dropout=0.1,
            block_order="conv-act-norm-pool-dropout",
        )
    )
    assert list(model.features.block1.body._modules) == ["conv", "act", "norm", "pool", "dropout"]


def test_norm_before_conv_normalises_the_input_channels():
    model = build_model(ModelConfig(**SMALL, norm="batch", block_order="norm-conv-act-dropout-pool"))
    assert model.features.block1.body.norm.num_features == 1
    assert model.features.block2.body.norm.num_features == 8


def test_residual_blocks_project_when_width_changes():
    config = ModelConfig(
        depth=3, width=(8, 8, 16), pool_after=(3,), pool_size=2, residual=True, head="gap", head_hidden=()
    )
    model = build_model(config)
    assert model.features.block2.shortcut is None
    assert model.features.block3.shortcut is not None
    assert forward_shape(config) == (2, 10)


def test_flatten_head_with_hidden_layers_and_dropout():
    model = build_model(ModelConfig(**SMALL | {"head": "flatten", "head_hidden": (16, 8)}, head_dropout=0.2))
    names = list(model.head._modules)
    assert names == [
        "flatten",
        "dropout0",
        "linear0",
        "act0",
        "dropout1",
        "linear1",
        "act1",
        "dropout2",
        "linear2",
    ]
    assert model.head.linear0.in_features == 8 * 7 * 7


def test_flop_count_of_one_conv_and_linear():
    config = ModelConfig(depth=1, width=4, pools=0, head="gap", head_hidden=())
    # conv: 28*28 outputs x 4 channels x 9 taps; linear: 4 x 10
    assert flop_count(build_model(config)) == 28 * 28 * 4 * 9 + 40


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(depth=6, pool_after=(1, 2, 3, 4), pool_size=3),
            r"pooling after layer 4 shrinks a 1x1 map below 1 pixel; at most 3 poolings of size 3",
        ),
        (dict(depth=2, width=12, norm="group", groups=8), "model.groups = 8 does not divide model.width 12"),
        (dict(norm="weird"), "model.norm is 'weird'; valid: none, batch, instance, layer, group"),
        (dict(activation="swish"), "model.activation is 'swish'; valid: relu"),
        (dict(pool="min"), "model.pool is 'min'; valid: max, avg"),
        (dict(block_order="conv-act-pool"), "must list each of conv, norm, act, dropout, pool exactly once"),
        (dict(block_order="conv-norm-act-drop-pool"), "unknown step 'drop'"),
        (dict(residual=True, block_order="conv-pool-norm-act-dropout"), "needs 'pool' last"),
    ],
)
def test_impossible_architectures_are_rejected_before_building(settings, message):
    with pytest.raises(ArchitectureError, match=message):
        check_model(ModelConfig(**settings))


def random_configs(count: int, seed: int = 0) -> list[ModelConfig]:
    """Models of every shape the settings allow: orders, norms, residuals, heads, poolings."""
    rng = random.Random(seed)
    orders = ["conv-norm-act-dropout-pool", "conv-norm-act-pool-dropout", "pool-conv-norm-act-dropout",
              "norm-conv-act-dropout-pool", "conv-act-norm-dropout-pool"]  # fmt: skip
    configs = []
    while len(configs) < count:
        settings = dict(
            depth=rng.randint(1, 7), width=rng.choice([4, 8, 16, 24]), kernel_size=rng.choice([1, 3, 5]),
            norm=rng.choice(list(NORMS)), dropout=rng.choice([0.0, 0.2]), residual=rng.random() < 0.3,
            head=rng.choice(["flatten", "gap"]), head_hidden=rng.choice([(), (32,), (16, 8)]),
            pool_size=rng.choice([2, 3]), pools=rng.randint(0, 2), block_order=rng.choice(orders), groups=4,
        )  # fmt: skip
        try:
            config = ModelConfig(**settings)
            check_model(config)
        except (ArchitectureError, ConfigError):
            continue
        configs.append(config)
    return configs


def test_the_size_worked_out_from_the_config_is_the_built_models():
    for config in random_configs(120):
        size, model = model_size(config), build_model(config)
        assert (size.params, size.macs) == (param_count(model), flop_count(model)), config


def test_a_model_too_big_for_memory_is_refused_before_anything_is_allocated(monkeypatch):
    import hypotune.fashion.model as model_module

    def never(config):
        raise AssertionError("built a model to size it")

    monkeypatch.setattr(model_module, "build_model", never)
    huge = RunConfig(Settings()).replace(
        {"model": {"depth": 8, "width": 4096, "kernel_size": 27, "pools": 0}}
    )
    with pytest.raises(
        ArchitectureError, match=r"needs about [0-9.]+ GiB to train at batch 64; this machine"
    ):
        check_fits(huge)
    assert model_size(huge.model).params > 30 * 10**9
    assert model_module.forward_cost(huge.model) > 10**12  # a study orders its queue without building
    small = RunConfig(Settings())
    assert check_fits(small, memory=2**30).params == model_size(small.model).params
    with pytest.raises(ArchitectureError, match="this machine has 0.0 GiB"):
        check_fits(small, memory=1000)


@pytest.mark.parametrize("norm", ["none", "batch", "instance", "layer", "group"])
def test_memory_layout_is_contiguous_only_where_channels_last_is_slower(norm):
    import torch

    from hypotune.fashion.model import memory_layout

    slower = norm in ("instance", "group")
    expected = torch.contiguous_format if slower else torch.channels_last
    assert memory_layout(ModelConfig(norm=norm, groups=8)) == expected


def test_instance_norm_computes_what_instance_norm_2d_computes():
    torch.manual_seed(0)
    ours = NORMS["instance"](6, 8)
    reference = torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        for module in (ours, reference):
            module.weight.copy_(torch.linspace(0.5, 2.0, 6))
            module.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    x = torch.randn(4, 6, 7, 7) * 3 + 1
    assert set(ours.state_dict()) == set(reference.state_dict())
    for training in (True, False):
        ours.train(training)
        reference.train(training)
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 3, 7, 7), (2, 2, 9, 10), (1, 1, 3, 3)])
def test_max_pooling_without_gradients_gives_exactly_what_torch_gives(shape, size):
    from torch.nn import functional as F
    from torch.testing import assert_close as exact

    torch.manual_seed(0)
    x = torch.randn(shape).relu()  # ties at zero, as after an activation
    x[0, 0, 0, 0], x[-1, -1, -1, -1], x[0, -1, 1, 1] = float("nan"), float("-inf"), float("inf")
    pool = POOLS["max"](size)
    for layout in (torch.contiguous_format, torch.channels_last):
        data = x.contiguous(memory_format=layout)
        for no_gradients in (torch.inference_mode, torch.no_grad):
            with no_gradients():
                exact(pool(data), F.max_pool2d(data, size), rtol=0, atol=0, equal_nan=True)


def test_max_pooling_with_gradients_routes_them_as_torch_does():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8).relu().requires_grad_()  # tied zeros: the first one gets it
    reference = x.detach().clone().requires_grad_()
    out, expected = POOLS["max"](2)(x), torch.nn.MaxPool2d(2)(reference)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(out, expected) and torch.equal(x.grad, reference.grad)


def test_smaller_inputs_than_the_window_fail_as_torch_fails():
    with torch.no_grad(), pytest.raises(RuntimeError):
        POOLS["max"](3)(torch.zeros(1, 1, 2, 2))
