"""FVQTransformer: LlamaGen's c2i GPT layout, causality, 2-D RoPE, the class token, the KV cache."""

import pytest
import torch
import torch.nn.functional as F

from fvq_hf import TRANSFORMER_PRESETS, FVQTransformer
from fvq_hf.models.fvq_transformer import apply_rope, rope_2d_table, swiglu_hidden_size


def tiny_transformer(**overrides) -> FVQTransformer:
    config = {
        "vocab_size": 64,
        "num_classes": 5,
        "block_size": 16,
        "dim": 32,
        "n_layer": 2,
        "n_head": 2,
        "multiple_of": 16,
    }
    config.update(overrides)
    torch.manual_seed(0)
    model = FVQTransformer(**config).eval()
    torch.nn.init.normal_(model.output.weight, std=0.5)  # the init's zero head would make every logit equal
    return model


def llamagen_c2i_keys(n_layer: int) -> set[str]:
    """The state-dict keys of LlamaGen's class-conditional GPT, written out from its published layout."""
    keys = {"cls_embedding.embedding_table.weight", "tok_embeddings.weight", "norm.weight", "output.weight"}
    for i in range(n_layer):
        keys |= {
            f"layers.{i}.attention.wqkv.weight",
            f"layers.{i}.attention.wo.weight",
            f"layers.{i}.feed_forward.w1.weight",
            f"layers.{i}.feed_forward.w2.weight",
            f"layers.{i}.feed_forward.w3.weight",
            f"layers.{i}.attention_norm.weight",
            f"layers.{i}.ffn_norm.weight",
        }
    return keys


@pytest.mark.parametrize(
    ("preset", "n_layer", "dim", "millions"),
    [("GPT-B", 12, 768, 111), ("GPT-L", 24, 1024, 343), ("GPT-XL", 36, 1280, 775)],
)
def test_presets_have_llamagen_keys_shapes_and_sizes(preset, n_layer, dim, millions):
    with torch.device("meta"):
        model = FVQTransformer.from_preset(preset, vocab_size=16384)
    state = model.state_dict()
    assert set(state) == llamagen_c2i_keys(n_layer)
    hidden = swiglu_hidden_size(dim, 256)
    assert hidden % 256 == 0 and hidden >= int(8 * dim / 3)
    assert state["layers.0.attention.wqkv.weight"].shape == (3 * dim, dim)
    assert state["layers.0.feed_forward.w1.weight"].shape == (hidden, dim)
    assert state["cls_embedding.embedding_table.weight"].shape == (1001, dim)
    assert state["output.weight"].shape == (16384, dim)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == millions  # LlamaGen's reported sizes
    assert model.head_dim == 64


def test_init_is_llamagens():
    model = FVQTransformer.from_preset("tiny", vocab_size=512, block_size=64, num_classes=10)
    assert torch.count_nonzero(model.output.weight) == 0
    assert model.tok_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.layers[0].attention.wqkv.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(model.norm.weight, torch.ones_like(model.norm.weight))
    assert set(TRANSFORMER_PRESETS) >= {"GPT-B", "GPT-L", "GPT-XL", "GPT-XXL", "tiny"}


def test_multiple_of_is_a_config_field():
    assert swiglu_hidden_size(128, 256) == 512  # LlamaGen's 256 inflates a tiny model's 341 to 512
    assert swiglu_hidden_size(128, 32) == 352
    assert swiglu_hidden_size(768, 256) == 2048
    model = FVQTransformer.from_preset("tiny", vocab_size=32, block_size=16)
    assert model.layers[0].feed_forward.w1.out_features == 352


def test_causality_changing_token_t_leaves_earlier_logits():
    model = tiny_transformer()
    tokens = torch.randint(0, 64, (2, 16))
    labels = torch.tensor([1, 3])
    logits = model(tokens, labels).logits
    assert logits.shape == (2, 16, 64) and logits.dtype == torch.float32
    for t in (0, 5, 15):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 7) % 64
        other = model(changed, labels).logits
        assert torch.equal(other[:, : t + 1], logits[:, : t + 1])  # logits[:, t] predicts t: it never sees t
        if t < 15:
            assert not torch.allclose(other[:, t + 1 :], logits[:, t + 1 :])
    other_class = model(tokens, torch.tensor([2, 3])).logits
    assert not torch.allclose(other_class[0, 0], logits[0, 0])
    assert torch.equal(other_class[1], logits[1])


def test_class_token_query_and_key_are_exactly_zero(monkeypatch):
    model = tiny_transformer()
    seen = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        seen.append((q.detach().clone(), k.detach().clone()))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    model(torch.randint(0, 64, (2, 16)), torch.tensor([0, 4]))
    assert len(seen) == 2  # one call per layer
    for q, k in seen:
        assert torch.count_nonzero(q[:, :, 0]) == 0 and torch.count_nonzero(k[:, :, 0]) == 0
        assert torch.count_nonzero(q[:, :, 1]) > 0


def test_rope_score_depends_only_on_row_and_column_offsets():
    grid, head_dim = 6, 16
    cos, sin = rope_2d_table(grid, head_dim)
    assert cos.shape == (1 + grid * grid, head_dim // 2)
    assert torch.count_nonzero(cos[0]) == 0 and torch.count_nonzero(sin[0]) == 0
    torch.manual_seed(0)
    q, k = torch.randn(head_dim, dtype=torch.float64), torch.randn(head_dim, dtype=torch.float64)

    def score(a, b):  # a, b are (row, col); position 0 is the class token
        pa, pb = 1 + a[0] * grid + a[1], 1 + b[0] * grid + b[1]
        qa = apply_rope(q[None], cos[pa : pa + 1].double(), sin[pa : pa + 1].double())
        kb = apply_rope(k[None], cos[pb : pb + 1].double(), sin[pb : pb + 1].double())
        return (qa * kb).sum().item()

    reference = score((3, 4), (1, 1))
    assert score((4, 5), (2, 2)) == pytest.approx(reference, abs=1e-5)  # same (2, 3) offset
    assert score((2, 3), (0, 0)) == pytest.approx(reference, abs=1e-5)
    assert score((3, 4), (1, 2)) != pytest.approx(reference, abs=1e-3)  # another column offset
    assert score((3, 4), (2, 1)) != pytest.approx(reference, abs=1e-3)  # another row offset
    # interleaved pairs: the first quarter of the head turns with the row, the last with the column
    row_moved, col_moved = 1 + 1 * grid + 0, 1 + 0 * grid + 1
    assert torch.count_nonzero(sin[row_moved, : head_dim // 4]) == head_dim // 4
    assert torch.count_nonzero(sin[row_moved, head_dim // 4 :]) == 0
    assert torch.count_nonzero(sin[col_moved, : head_dim // 4]) == 0


@pytest.mark.parametrize("n_kv_head", [None, 1])  # 1: grouped-query attention
def test_cached_logits_equal_full_forward_at_every_step(n_kv_head):
    model = tiny_transformer(n_kv_head=n_kv_head)
    tokens = torch.randint(0, 64, (3, 16))
    labels = torch.tensor([0, 2, 4])
    full = model(tokens, labels).logits
    cache = model.new_cache(3)
    steps = [model.forward_cached(cache, class_labels=labels)]
    for t in range(15):
        steps.append(model.forward_cached(cache, input_ids=tokens[:, t : t + 1]))
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)
    # a prefix in one call then one token at a time: the same logits
    cache = model.new_cache(3)
    first = model.forward_cached(cache, class_labels=labels, input_ids=tokens[:, :5])
    torch.testing.assert_close(first, full[:, 5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        model.forward_cached(cache, input_ids=tokens[:, 5:8])[:, None], full[:, 8:9], rtol=1e-5, atol=1e-5
    )
    assert cache.length == 9


def test_cache_is_not_state_and_not_left_on_the_model():
    model = tiny_transformer()
    keys = set(model.state_dict())
    cache = model.new_cache(2)
    model.forward_cached(cache, class_labels=torch.tensor([0, 1]))
    assert set(model.state_dict()) == keys
    assert not any("cache" in name or "rope" in name for name, _ in model.named_buffers())
    assert all(not isinstance(v, torch.Tensor) or v.numel() < 1000 for v in vars(model).values())


def test_cache_refuses_overflow_and_misuse():
    model = tiny_transformer()
    cache = model.new_cache(1)
    with pytest.raises(ValueError, match="first call must pass class_labels"):
        model.forward_cached(cache, input_ids=torch.zeros(1, 1, dtype=torch.long))
    model.forward_cached(cache, class_labels=torch.tensor([0]), input_ids=torch.zeros(1, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="full"):
        model.forward_cached(cache, input_ids=torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="first call only"):
        model.forward_cached(cache, class_labels=torch.tensor([0]))


def test_bad_inputs_are_clear_errors():
    model = tiny_transformer()
    with pytest.raises(ValueError, match="outside this model's table"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.tensor([6]))
    with pytest.raises(ValueError, match=r"0 … 63"):
        model(torch.full((1, 4), 64), torch.tensor([0]))
    with pytest.raises(ValueError, match="at most 16"):
        model(torch.zeros(1, 17, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(1, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="square"):
        FVQTransformer(block_size=200, dim=32, n_layer=1, n_head=2)
    with pytest.raises(ValueError, match="Unknown FVQTransformer preset"):
        FVQTransformer.from_preset("GPT-Q")


def test_training_mode_drops_classes_to_the_null_row():
    model = tiny_transformer(class_dropout_prob=1.0, token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0)
    tokens = torch.randint(0, 64, (4, 16))
    model.train()
    dropped = model(tokens, torch.tensor([0, 1, 2, 3])).logits
    model.eval()
    null = model(tokens, torch.full((4,), model.null_class_id)).logits
    torch.testing.assert_close(dropped, null)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_transformer()
    model.save_pretrained(tmp_path / "gpt")
    loaded = FVQTransformer.from_pretrained(tmp_path / "gpt").eval()
    tokens, labels = torch.randint(0, 64, (2, 16)), torch.tensor([1, 2])
    assert torch.equal(loaded(tokens, labels).logits, model(tokens, labels).logits)
