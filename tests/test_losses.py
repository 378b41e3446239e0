import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from fvq_hf.losses import (
    LPIPS,
    AlexNetFeatures,
    PatchGANDiscriminator,
    PerceptualWeightsUnavailable,
    VGG16Features,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
    load_alexnet_weights,
)
from fvq_hf.losses.perceptual import _lpips_heads_file


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


# ------------------------------------------------------------------------------------ LPIPS-AlexNet (evaluation)
@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    """AlexNet weights in torchvision's layout (features.* plus classifier keys), made locally."""
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in AlexNetFeatures().state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(8, 4)
    path = tmp_path_factory.mktemp("alexnet") / "alexnet.safetensors"
    save_file(state, path)
    return path, state


def test_alexnet_has_torchvision_parameter_names():
    # torchvision's alexnet().features: convolutions at indices 0, 3, 6, 8, 10
    expected = [f"features.{i}.{kind}" for i in (0, 3, 6, 8, 10) for kind in ("weight", "bias")]
    shapes = {k: tuple(v.shape) for k, v in AlexNetFeatures().state_dict().items()}
    assert list(shapes) == expected
    assert shapes["features.0.weight"] == (64, 3, 11, 11) and shapes["features.10.weight"] == (256, 256, 3, 3)


def _reference_alex_lpips(state, x, y):
    """LPIPS v0.1 written out by hand: scaling layer, AlexNet relu1–5, unit-normalised differences, heads, means."""
    heads = torch.load(_lpips_heads_file("alex"), map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(image):
        h = (image - shift) / scale
        h1 = F.relu(F.conv2d(h, state["features.0.weight"], state["features.0.bias"], stride=4, padding=2))
        h2 = F.relu(F.conv2d(F.max_pool2d(h1, 3, 2), state["features.3.weight"], state["features.3.bias"], padding=2))
        h3 = F.relu(F.conv2d(F.max_pool2d(h2, 3, 2), state["features.6.weight"], state["features.6.bias"], padding=1))
        h4 = F.relu(F.conv2d(h3, state["features.8.weight"], state["features.8.bias"], padding=1))
        h5 = F.relu(F.conv2d(h4, state["features.10.weight"], state["features.10.bias"], padding=1))
        return [h1, h2, h3, h4, h5]

    total = torch.zeros(x.shape[0])
    for i, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total += F.conv2d((a - b) ** 2, heads[f"lin{i}.model.1.weight"]).mean(dim=(1, 2, 3))
    return total


def test_alexnet_lpips_matches_a_hand_written_lpips(alexnet_file):
    path, state = alexnet_file
    lpips = LPIPS(str(path), net="alex")
    assert lpips.net == "alex" and torch.equal(lpips.backbone.features[0].weight, state["features.0.weight"])
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-7)
    assert torch.allclose(lpips(x, y), _reference_alex_lpips(state, x, y), rtol=1e-5, atol=1e-7)
    torch.manual_seed(2)  # other backbone weights give another distance: the loaded ones are used
    assert not torch.allclose(lpips(x, y), LPIPS(net="alex", random_init=True)(x, y))


def test_alexnet_loads_a_full_lpips_checkpoint(alexnet_file, tmp_path):
    _, state = alexnet_file
    # the lpips package / IQA-PyTorch layout: trunk as net.slice{k}.{torchvision index}, heads as lin{k}.model.1
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    full = {}
    for key, value in state.items():
        if key.startswith("features."):
            index, kind = key.split(".")[1:]
            full[f"net.slice{slices[int(index)]}.{index}.{kind}"] = value
    full["lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    torch.save(full, tmp_path / "LPIPS_v0.1_alex.pth")
    loaded = load_alexnet_weights(str(tmp_path / "LPIPS_v0.1_alex.pth"))
    assert set(loaded) == {k for k in state if k.startswith("features.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_missing_alexnet_weights_say_what_to_do():
    with pytest.raises(PerceptualWeightsUnavailable, match="alexnet-owt-7be5be79.pth"):
        LPIPS(net="alex")
    with pytest.raises(PerceptualWeightsUnavailable, match="LPIPS-AlexNet needs"):
        LPIPS("nobody/no-such-alexnet", net="alex")  # HF_HUB_OFFLINE=1: the Hub is not reachable
    with pytest.raises(ValueError, match="'vgg' or 'alex'"):
        LPIPS(random_init=True, net="squeeze")
