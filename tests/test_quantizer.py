import pytest
import torch

from fvq_hf.quantization import VectorQuantizer, VQBridge


def test_straight_through_and_losses():
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 8, beta=0.25)
    with torch.no_grad():
        vq.embedding.weight.normal_()
    z = torch.randn(2, 8, 3, 5, requires_grad=True)
    quantized, indices, (codebook_loss, commitment_loss) = vq(z, return_loss_breakdown=True)
    assert quantized.shape == z.shape and indices.shape == (2, 3, 5)
    chosen = vq.embedding.weight[indices].permute(0, 3, 1, 2)
    assert torch.allclose(quantized, chosen, atol=1e-6)
    mse = ((chosen - z) ** 2).mean()
    assert torch.allclose(codebook_loss, mse) and torch.allclose(commitment_loss, 0.25 * mse)
    # straight-through: d quantized / d z is the identity
    quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_loss_gradients_go_where_they_should():
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 8)
    z = torch.randn(10, 8, requires_grad=True)
    _, _, (codebook_loss, commitment_loss) = vq(z, return_loss_breakdown=True)
    codebook_loss.backward(retain_graph=True)
    assert z.grad is None and vq.embedding.weight.grad.abs().sum() > 0
    vq.embedding.weight.grad = None
    commitment_loss.backward()
    assert z.grad.abs().sum() > 0 and vq.embedding.weight.grad is None


def test_channel_last_input_and_plain_call():
    vq = VectorQuantizer(16, 4)
    quantized, indices, loss = vq(torch.randn(3, 7, 4))
    assert quantized.shape == (3, 7, 4) and indices.shape == (3, 7) and loss.ndim == 0


def test_l2_normalised_quantizer_uses_cosine_distance():
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 8, l2_normalize=True)
    with torch.no_grad():
        vq.embedding.weight.normal_()
    z = torch.randn(20, 8) * 5
    quantized, indices, _ = vq(z)
    cosine = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(vq.embedding.weight, dim=1).t()
    assert torch.equal(indices, cosine.argmax(1))
    assert torch.allclose(quantized.norm(dim=1), torch.ones(20), atol=1e-5)


def test_bridge_codebook_is_what_the_lookup_uses():
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=64, codebook_dim=8, patch_size=2, hidden_size=32, num_heads=2, output_init_std=0.05)
    vq = VectorQuantizer(64, 8, projector=bridge)
    z = torch.randn(30, 8) * 0.1
    quantized, indices, _ = vq(z)
    projected = bridge(vq.embedding.weight)
    assert torch.allclose(quantized, projected[indices], atol=1e-6)


def test_indices_to_codes_checks_its_input():
    vq = VectorQuantizer(16, 4)
    assert vq.indices_to_codes(torch.zeros(1, 2, 3, dtype=torch.long)).shape == (1, 4, 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        vq.indices_to_codes(torch.tensor([[[16]]]))
    with pytest.raises(TypeError, match="integer"):
        vq.indices_to_codes(torch.zeros(1, 2, 2))


def test_wrong_vector_dimension():
    with pytest.raises(ValueError, match="expects 4-dimensional vectors"):
        VectorQuantizer(16, 4)(torch.randn(2, 5, 3, 3))


def test_raw_codebook_init_and_what_it_does_to_a_bridge():
    torch.manual_seed(0)
    paper = VectorQuantizer(1024, 32)
    assert paper.embedding.weight.abs().max() <= 1 / 1024  # VQGAN's uniform(−1/K, 1/K)
    scaled = VectorQuantizer(1024, 32, codebook_init_std=0.02)
    assert abs(scaled.embedding.weight.std().item() - 0.02) < 1e-3 and abs(scaled.embedding.weight.mean().item()) < 1e-3
    with pytest.raises(ValueError, match="codebook_init_std"):
        VectorQuantizer(1024, 32, codebook_init_std=0.0)

    # Behind a bridge, ±1/K inputs sit far below the LayerNorm eps: the codes of one slot come out bunched
    # (little spread across bridge tokens) while the slots sit apart. An embedding-scale init spreads them.
    def within_over_between(std):
        torch.manual_seed(0)
        bridge = VQBridge(
            codebook_size=4096, codebook_dim=32, patch_size=4, hidden_size=32, num_heads=2, output_init_std=1e-3
        )
        vq = VectorQuantizer(4096, 32, projector=bridge, codebook_init_std=std)
        with torch.no_grad():
            codes = vq.get_codebook()
        slot = bridge.slot_of(torch.arange(4096))
        means = torch.stack([codes[slot == s].mean(0) for s in range(16)])
        within = torch.stack([(codes[slot == s] - means[s]).norm(dim=1).mean() for s in range(16)]).mean()
        return float(within / (means - means.mean(0)).norm(dim=1).mean())

    assert within_over_between(None) < 0.1 and within_over_between(0.02) > 0.5  # measured 0.03 and 0.71


def test_codebook_init_l2_normalises_the_raw_codebook_once_and_keeps_l2_lookup():
    # FVQ's codebook_l2_norm: unit-length raw codes at init, then a plain L2 search over the projected codebook
    torch.manual_seed(0)
    for std in (None, 0.02):
        vq = VectorQuantizer(64, 8, codebook_init_std=std, codebook_init_l2=True)
        assert torch.allclose(vq.embedding.weight.norm(dim=1), torch.ones(64), atol=1e-6)
    vq = VectorQuantizer(64, 8, projector=torch.nn.Linear(8, 8), codebook_init_l2=True)
    with torch.no_grad():
        vq.projector.weight.mul_(torch.linspace(0.2, 3.0, 8)[:, None])  # projected codes of very different lengths
        codebook = vq.get_codebook()
    assert not torch.allclose(codebook.norm(dim=1), torch.ones(64), atol=1e-2)  # nothing normalised at lookup
    z = torch.randn(200, 8)
    _, indices, _ = vq(z)
    assert torch.equal(indices, torch.cdist(z, codebook).argmin(1))
    cosine = (torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(codebook, dim=1).t()).argmax(1)
    assert not torch.equal(indices, cosine)  # which is not what l2_normalize (LlamaGen's meaning) would pick
