"""Inference preparation: patch convolutions as matmuls compute the same function and the same input gradient."""

import pytest
import torch
from torch import nn

from imagesafety.encoders.inference_mode import PatchLinear, linearise_patch_convs, prepare_for_inference


@pytest.mark.parametrize(
    "size", [(32, 32), (35, 41)]
)  # the second leaves incomplete border patches, as a conv drops them
def test_patch_linear_matches_conv_output_and_input_gradient(size):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, kernel_size=8, stride=8)
    x = torch.rand(2, 3, *size, requires_grad=True)
    expected = conv(x)
    (expected * torch.arange(expected.numel()).view_as(expected)).sum().backward()
    expected_grad = x.grad.clone()
    x.grad = None
    got = PatchLinear(conv)(x)
    (got * torch.arange(got.numel()).view_as(got)).sum().backward()
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, expected_grad, atol=1e-4, rtol=1e-5)


def test_only_non_overlapping_patch_convs_are_replaced():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=4), nn.Conv2d(8, 8, 3, stride=1, padding=1), nn.Conv2d(8, 8, 2, stride=2, padding=1)
    )
    assert linearise_patch_convs(model) == 1
    assert isinstance(model[0], PatchLinear) and type(model[1]) is nn.Conv2d and type(model[2]) is nn.Conv2d


def test_prepare_for_inference_freezes_weights_and_keeps_the_function():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 16, 1))
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        expected = model.eval()(x)
    model.train()
    prepare_for_inference(model, "cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in model.parameters())
