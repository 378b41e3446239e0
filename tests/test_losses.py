import pytest
import torch
from safetensors.torch import save_file

from fvq_hf.losses import (
    LPIPS,
    PatchGANDiscriminator,
    PerceptualWeightsUnavailable,
    VGG16Features,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """VGG16 weights in timm's layout (features.* plus classifier keys), made locally."""
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in VGG16Features().state_dict().items()}
    state["head.fc.weight"] = torch.zeros(10, 4)
    path = tmp_path_factory.mktemp("vgg") / "model.safetensors"
    save_file(state, path)
    return path, state


def test_lpips_loads_backbone_and_heads(vgg_file):
    path, state = vgg_file
    lpips = LPIPS(str(path))
    assert torch.equal(lpips.backbone.features[0].weight, state["features.0.weight"])
    assert all(head.weight.abs().sum() > 0 for head in lpips.heads)  # the shipped linear heads
    assert not any(p.requires_grad for p in lpips.parameters())


def test_lpips_is_a_distance_with_input_gradients(vgg_file):
    lpips = LPIPS(str(vgg_file[0]))
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_()
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
    d = lpips(x, y)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert y.grad.abs().sum() > 0
    assert lpips(x, x + 0.5 * torch.randn_like(x)).mean() > lpips(x, x + 0.05 * torch.randn_like(x)).mean()


def test_missing_perceptual_weights_say_what_to_do(monkeypatch):
    with pytest.raises(PerceptualWeightsUnavailable, match="perceptual weight 0"):
        LPIPS("nobody/no-such-vgg")  # HF_HUB_OFFLINE=1: the Hub is not reachable
    assert LPIPS(random_init=True)(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)).item() == 0


def test_patchgan_and_hinge_losses():
    torch.manual_seed(0)
    disc = PatchGANDiscriminator()
    assert disc(torch.zeros(2, 3, 256, 256)).shape == (2, 1, 30, 30)  # the 70 × 70 PatchGAN
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules()) == 3
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.5))
    assert hinge_generator_loss(fake).item() == pytest.approx(1.0)


def test_adaptive_weight_balances_gradient_norms():
    last = torch.nn.Parameter(torch.ones(3))
    rec = (last * 2).sum()  # gradient norm 2·√3
    gan = (last * 0.5).sum()  # gradient norm 0.5·√3
    assert adaptive_gan_weight(rec, gan, last).item() == pytest.approx(4.0, rel=1e-3)
