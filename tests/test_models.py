"""The model zoo: shapes on digits and CIFAR sizes, parameter counts, skip switch, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sampletopo._errors import SampletopoError
from sampletopo.models import BasicBlock, create_model, list_models, model_kwargs

torch.set_num_threads(1)


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_and_learns_on_8x8_digits_and_cifar_sizes(name):
    torch.manual_seed(0)
    small = {"wrn16": {"widen": 1}, "vgg9": {"width": 8}}.get(name, {})
    m = create_model(name, num_classes=10, in_channels=1, input_size=8, **small)
    x = torch.randn(6, 1, 8, 8)
    out = m(x)
    assert out.shape == (6, 10)
    loss = nn.functional.cross_entropy(out, torch.arange(6))
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    big = create_model(name, num_classes=7, in_channels=3, input_size=32, **small)
    assert big(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_resnet20_parameter_count_by_hand():
    # stem 3*16*9 + BN 32; stage 1: 3 blocks of two 16x16 convs (2304 each) + 2 BN (32 each);
    # stage 2: first block 16->32 (4608 + 9216 + 2 BN 64 + projection 512 + BN 64), two blocks of
    # 2*9216 + 128; stage 3 likewise with 64 channels; fc 64*10 + 10.
    stage1 = 3 * (2 * 2304 + 64)
    stage2 = (4608 + 9216 + 128 + 512 + 64) + 2 * (2 * 9216 + 128)
    stage3 = (18432 + 36864 + 256 + 2048 + 128) + 2 * (2 * 36864 + 256)
    expected = 432 + 32 + stage1 + stage2 + stage3 + 650
    assert _count(create_model("resnet20")) == expected == 272_474
    # skip=False removes exactly the two projection shortcuts (conv + BN)
    assert _count(create_model("resnet20", skip=False)) == expected - (512 + 64) - (2048 + 128)
    # depth 56 has 9 blocks per stage; WRN-16-4 is the 2.7M-parameter network of the WRN paper
    assert _count(create_model("resnet56")) > 3 * _count(create_model("resnet20"))
    assert _count(create_model("wrn16", widen=4)) == 2_748_890


def test_skip_false_removes_the_identity_path():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 5)
    outs = {}
    for skip in (True, False):
        block = BasicBlock(8, 8, 1, skip=skip).eval()
        nn.init.zeros_(block.conv2.weight)  # the residual branch now outputs bn2(0) = 0
        outs[skip] = block(x)
    torch.testing.assert_close(outs[True], torch.relu(x))
    torch.testing.assert_close(outs[False], torch.zeros_like(x))
    plain = create_model("resnet56", skip=False)
    assert not any("shortcut" in k for k in plain.state_dict())
    assert any("shortcut" in k for k in create_model("resnet56").state_dict())
    assert not any("shortcut" in k for k in create_model("wrn16", widen=1, skip=False).state_dict())


def test_options_change_the_architecture():
    assert create_model("wrn16", widen=3).fc.in_features == 64 * 3
    assert create_model("resnet", depth=8, width=4).fc.in_features == 16
    assert create_model("mlp", hidden=[7], in_channels=1, input_size=8).net[1].in_features == 64
    pools = lambda m: sum(isinstance(x, nn.MaxPool2d) for x in m.modules())  # noqa: E731
    assert pools(create_model("vgg9", width=4, input_size=8, in_channels=1)) == 3  # 8->4->2->1
    assert pools(create_model("vgg9", width=4)) == 5  # 32->16->8->4->2->1


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = create_model("resnet20", width=4).state_dict()
    torch.manual_seed(3)
    b = create_model("resnet20", width=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_names_and_options_list_the_choices():
    with pytest.raises(SampletopoError) as err:
        create_model("resnet18")
    for name in list_models():
        assert name in str(err.value)
    with pytest.raises(
        SampletopoError, match=r"\['widen'\].*resnet20.*\['depth', 'skip', 'width'\]"
    ):
        create_model("resnet20", widen=2)
    with pytest.raises(SampletopoError, match="6n\\+2.*21"):
        create_model("resnet", depth=21)
    with pytest.raises(SampletopoError, match="6n\\+4.*15"):
        create_model("wrn16", depth=15)
    with pytest.raises(SampletopoError, match="'skip'.*bool"):
        create_model("resnet20", skip="no")
    with pytest.raises(SampletopoError, match="'width'.*positive int.*0"):
        create_model("cnn", width=0)
    assert model_kwargs("wrn16") == {"depth": 16, "widen": 4, "width": 16, "dropout": 0.0}
