"""Every tokenizer card, whoever writes it, publishes its metrics under one spelling that the Space reads."""

import pytest
from conftest import small_model
from huggingface_hub import ModelCard
from torch.utils.data import DataLoader

from fvq_hf.data import DemoCropDataset, collate_images
from fvq_hf.evaluation import evaluate_tokenizer
from fvq_hf.hub import PUBLISHED_METRICS, update_model_card
from fvq_hf.space.models import read_card_usage
from fvq_hf.training.outputs import save_trained_tokenizer


def test_both_card_writers_publish_usage_that_the_space_reads(tmp_path):
    model = small_model()
    loader = DataLoader(
        DemoCropDataset("heldout", resolution=32, num_samples=2, seed=0), batch_size=2, collate_fn=collate_images
    )
    result, _ = evaluate_tokenizer(model, loader)
    # the training script's card
    save_trained_tokenizer(model, str(tmp_path / "trained"), evaluation=result, eval_description="my photos")
    trained = read_card_usage(tmp_path / "trained")
    assert trained is not None and trained.usage == pytest.approx(result.usage, abs=1e-6)
    # evaluate_tokenizer.py --update_model_card, on a folder without a card
    model.fold().save_pretrained(tmp_path / "evaluated")
    update_model_card(str(tmp_path / "evaluated" / "README.md"), result, dataset_name="my photos")
    evaluated = read_card_usage(tmp_path / "evaluated")
    assert evaluated is not None and evaluated.usage == pytest.approx(result.usage, abs=1e-6)
    for folder in ("trained", "evaluated"):
        card = (tmp_path / folder / "README.md").read_text()
        assert "type: usage" in card and "codebook_usage" not in card
        types = {entry.metric_type for entry in ModelCard.load(tmp_path / folder / "README.md").data.eval_results}
        assert "usage" in types and types <= set(PUBLISHED_METRICS), types
