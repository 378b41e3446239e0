import pytest
import torch

from fvq_hf.quantization import nearest_code


def full_search(z, codebook):
    return ((z[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(1)


@pytest.mark.parametrize("chunk_size", [None, 10_000, 300_000, 2**20])
def test_chunked_equals_full_on_random_data(chunk_size):
    torch.manual_seed(0)
    z, codebook = torch.randn(700, 24), torch.randn(3000, 24)
    expected = nearest_code(z, codebook, chunk_size=None)
    assert torch.equal(nearest_code(z, codebook, chunk_size=chunk_size), expected)
    assert torch.equal(expected, full_search(z, codebook))


def test_ties_go_to_the_first_code_in_every_chunk_layout():
    torch.manual_seed(0)
    # small integers: every distance is exact, so duplicated codes tie exactly
    base = torch.randint(-2, 3, (1500, 6)).float()
    codebook = torch.cat([base, base, base])  # code i, i + 1500 and i + 3000 are equal
    z = torch.randint(-2, 3, (900, 6)).float()
    expected = full_search(z, codebook)
    assert expected.max() < 1500
    for chunk_size in (None, 1, 1024, 5000, 1_000_000):
        assert torch.equal(nearest_code(z, codebook, chunk_size=chunk_size), expected), chunk_size


def test_returns_squared_distances():
    torch.manual_seed(0)
    z, codebook = torch.randn(50, 8), torch.randn(200, 8)
    indices, distances = nearest_code(z, codebook, chunk_size=1024, return_distances=True)
    assert torch.allclose(distances, ((z - codebook[indices]) ** 2).sum(1), atol=1e-4)


def test_bf16_inputs_are_searched_in_fp32():
    torch.manual_seed(0)
    z, codebook = torch.randn(64, 16).bfloat16(), torch.randn(512, 16).bfloat16()
    expected = full_search(z.float(), codebook.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nearest_code(z, codebook, chunk_size=2048), expected)


def test_shape_errors():
    with pytest.raises(ValueError, match="same d"):
        nearest_code(torch.randn(4, 8), torch.randn(10, 9))
