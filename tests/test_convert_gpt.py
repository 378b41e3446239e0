"""fvq-convert on LlamaGen's class-conditional GPT checkpoints, and assembling a pipeline folder."""

import argparse

import pytest
import torch
from conftest import small_model

from fvq_hf import FVQPipeline, FVQTransformer
from fvq_hf.convert import ConversionError, convert_gpt_checkpoint, imagenet_id2label, infer_transformer_config, main

CONFIG = {"vocab_size": 64, "num_classes": 10, "block_size": 16, "dim": 128, "n_layer": 2, "n_head": 2}


def llamagen_file(tmp_path, container="model", ema=False, prefix="", extra_buffers=True, args=True, **config):
    """A checkpoint laid out as LlamaGen's train_c2i.py writes it (its key names are the FVQTransformer's)."""
    torch.manual_seed(0)
    model = FVQTransformer(**{**CONFIG, **config})
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    grid = int(model.config.block_size**0.5)
    if extra_buffers:  # what a model that sampled before saving carries
        state[prefix + "freqs_cis"] = torch.zeros(1 + grid * grid, model.head_dim // 2, 2)
        state[prefix + "layers.0.attention.kv_cache.k_cache"] = torch.zeros(2, model.config.n_head, 24, model.head_dim)
        state[prefix + "layers.0.attention.kv_cache.v_cache"] = torch.zeros(2, model.config.n_head, 24, model.head_dim)
    raw = {container: state, "steps": 1234}
    if ema:
        raw["ema"] = {k: v + 1.0 for k, v in state.items()}
    if args:
        raw["args"] = argparse.Namespace(
            gpt_model="GPT-custom",
            image_size=grid * 16,
            downsample_size=16,
            cls_token_num=1,
            dropout_p=0.1,
            token_dropout_p=0.1,
            drop_path_rate=0.0,
            vocab_size=64,
        )
    path = tmp_path / "c2i.pt"
    torch.save(raw, path)
    return path, model


@pytest.mark.parametrize("container", ["model", "module", "state_dict"])
def test_llamagen_layout_converts_with_every_key_accounted_for(tmp_path, container):
    path, model = llamagen_file(tmp_path, container=container, prefix="module." if container == "module" else "")
    result = convert_gpt_checkpoint(path, num_heads=2)
    assert result.weights_key == container
    assert result.dropped_keys == sorted(
        ["freqs_cis", "layers.0.attention.kv_cache.k_cache", "layers.0.attention.kv_cache.v_cache"]
    )
    assert result.model.config.block_size == 16 and result.model.config.num_classes == 10
    assert result.model.config.multiple_of == 256 and result.model.config.n_head == 2
    tokens, labels = torch.randint(0, 64, (2, 16)), torch.tensor([3, 9])
    model.eval()
    assert torch.equal(result.model(tokens, labels).logits, model(tokens, labels).logits)


def test_ema_is_preferred_and_grid_comes_from_args_without_freqs(tmp_path):
    path, _ = llamagen_file(tmp_path, ema=True, extra_buffers=False, block_size=64)
    result = convert_gpt_checkpoint(path, num_heads=2)
    assert result.weights_key == "ema" and result.model.config.block_size == 64
    assert "args.image_size" in result.grid_from
    assert result.model.config.resid_dropout_p == 0.1 and result.model.config.ffn_dropout_p == 0.1


def test_grid_unknown_is_an_error_naming_the_flag(tmp_path):
    path, _ = llamagen_file(tmp_path, extra_buffers=False, args=False)
    with pytest.raises(ConversionError, match="--image-size"):
        convert_gpt_checkpoint(path, num_heads=2)
    assert convert_gpt_checkpoint(path, image_size=64, num_heads=2).model.config.block_size == 16


def test_grouped_query_attention_and_small_multiple(tmp_path):
    path, model = llamagen_file(tmp_path, n_kv_head=1, multiple_of=32)
    result = convert_gpt_checkpoint(path, num_heads=2)
    assert result.model.config.n_kv_head == 1
    assert result.model.layers[0].feed_forward.w1.out_features == model.layers[0].feed_forward.w1.out_features


def test_unknown_and_missing_keys_are_listed(tmp_path):
    path, _ = llamagen_file(tmp_path)
    raw = torch.load(path, weights_only=False)
    raw["model"]["layers.0.attention.extra.weight"] = torch.zeros(1)
    del raw["model"]["norm.weight"]
    torch.save(raw, path)
    with pytest.raises(ConversionError) as error:
        convert_gpt_checkpoint(path, num_heads=2)
    assert "layers.0.attention.extra.weight" in str(error.value) and "norm.weight" in str(error.value)


def test_tokenizer_checkpoint_is_not_a_gpt(tmp_path):
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(1)}}, tmp_path / "x.pt")
    with pytest.raises(ConversionError, match="does not look like a LlamaGen class-conditional GPT"):
        convert_gpt_checkpoint(tmp_path / "x.pt")


def test_cli_writes_a_transformer_folder_and_a_pipeline(tmp_path, capsys):
    path, model = llamagen_file(tmp_path)
    main([str(path), str(tmp_path / "gpt"), "--num-heads", "2"])
    loaded = FVQTransformer.from_pretrained(tmp_path / "gpt").eval()
    tokens, labels = torch.randint(0, 64, (1, 16)), torch.tensor([1])
    assert torch.equal(loaded(tokens, labels).logits, model.eval()(tokens, labels).logits)
    assert "LlamaGen" in (tmp_path / "gpt" / "README.md").read_text()

    tokenizer = small_model(codebook_size=64).fold()
    tokenizer.save_pretrained(tmp_path / "tok")
    main([str(path), str(tmp_path / "pipe"), "--tokenizer", str(tmp_path / "tok"), "--num-heads", "2"])
    pipe = FVQPipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.config.sampling_defaults["guidance_scale"] == 4.0
    assert pipe.config.id2label == {}  # 10 classes: not ImageNet, so no names unless --id2label
    assert pipe(class_labels=[2], output_type="latent", generator=torch.Generator().manual_seed(0)).images.shape == (
        1,
        4,
        4,
    )


def test_imagenet_names():
    names = imagenet_id2label()
    assert len(names) == 1000 and names[1].startswith("goldfish") and names[207] == "golden retriever"


def bare_llamagen_state(n_layer: int, dim: int, n_head: int) -> dict:
    """The keys and shapes of a bare LlamaGen state dict (saved from FSDP: no args, nothing names the model),
    on the meta device: a 3,200-wide model costs no memory, and the config is read from shapes alone."""
    with torch.device("meta"):
        model = FVQTransformer(vocab_size=16, num_classes=2, block_size=4, dim=dim, n_layer=n_layer, n_head=n_head)
    return model.state_dict()


@pytest.mark.parametrize(
    "name, n_layer, dim, heads",
    [("GPT-B", 12, 768, 12), ("GPT-XXL", 48, 1536, 24), ("GPT-1B", 22, 2048, 32), ("GPT-3B", 24, 3200, 32)],
)
def test_heads_of_every_llamagen_model_are_recognised_from_width_and_depth(name, n_layer, dim, heads):
    from fvq_hf.convert import LLAMAGEN_GPT_MODELS, attention_heads

    assert LLAMAGEN_GPT_MODELS[name] == {"n_layer": n_layer, "n_head": heads, "dim": dim}
    assert attention_heads(dim, n_layer, {}) == (heads, f"{name}, recognised by its width and depth")
    assert attention_heads(dim, n_layer, {"gpt_model": name})[0] == heads
    state = bare_llamagen_state(n_layer, dim, heads)
    config, _, heads_from = infer_transformer_config(state, {}, image_size=32)
    assert config["n_head"] == heads and config["n_kv_head"] is None and name in heads_from


def test_a_model_of_no_known_shape_needs_num_heads(tmp_path):
    path, _ = llamagen_file(tmp_path)  # 2 layers × 128 wide, args.gpt_model "GPT-custom"
    with pytest.raises(ConversionError, match="none of LlamaGen's GPT_models.*pass --num-heads"):
        convert_gpt_checkpoint(path)
    with pytest.raises(SystemExit, match="--num-heads"):
        main([str(path), str(tmp_path / "gpt")])
    from fvq_hf.convert import attention_heads

    with pytest.raises(ConversionError, match="args.gpt_model is 'GPT-L'.*inconsistent"):
        attention_heads(3200, 24, {"gpt_model": "GPT-L"})
