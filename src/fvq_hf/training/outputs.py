"""What a training run leaves behind: the folded tokenizer, its unfolded twin for fine-tuning, a model card."""

from __future__ import annotations

import os

from huggingface_hub import EvalResult, ModelCardData

from ..hub import render_model_card

# left out of a pushed output folder: training state and logs
_NOT_PUSHED = ["checkpoints/**", "logs/**", "metrics.jsonl", ".*"]


def save_trained_tokenizer(
    model,
    output_dir: str,
    evaluation=None,
    eval_description: str = "",
    recipe: dict | None = None,
    hardware: str = "",
    wall_time: float | None = None,
    base_model: str | None = None,
    codebook_frozen: bool = False,
    push_to_hub: bool = False,
    hub_model_id: str | None = None,
    hub_token: str | None = None,
    hub_private: bool = False,
) -> dict:
    """Save ``model`` folded in ``output_dir`` and unfolded in ``output_dir/unfolded``, write the card, push.

    The folded model is what users load for inference; the unfolded one (raw codebook + projector) is what a
    fine-tune continues from. A model whose codebook was frozen (fine-tuned from a folded model) has no
    unfolded form, and none is written.
    """
    c = model.config
    model.fold().save_pretrained(output_dir)
    if not c.folded:  # raw codebook (+ projector): what a fine-tune continues from
        model.save_pretrained(os.path.join(output_dir, "unfolded"))
    repo_id = hub_model_id or os.path.basename(os.path.abspath(output_dir))

    metrics = {}
    if evaluation is not None:
        metrics = {"usage": evaluation.usage, "perplexity": evaluation.perplexity, "psnr": evaluation.psnr, "ssim": evaluation.ssim}
        if evaluation.lpips is not None:
            metrics["lpips"] = evaluation.lpips
        if evaluation.rfid is not None:
            metrics["rfid"] = evaluation.rfid
    eval_results = [
        EvalResult(
            task_type="image-to-image",
            task_name="image reconstruction",
            dataset_type="custom",
            dataset_name=eval_description or "held-out images",
            metric_type=name,
            metric_value=round(float(value), 6),
            metric_name={"usage": "codebook usage", "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "rfid": "rFID"}.get(name, name),
        )
        for name, value in metrics.items()
    ]
    card_data = ModelCardData(
        library_name="fvq_hf",
        tags=["fvq", "vqgan", "image-tokenizer", "vector-quantization"],
        model_name=repo_id,
        eval_results=eval_results or None,
        base_model=base_model,
    )
    if c.projector == "vqbridge":
        projector = f"VQBridge ({c.bridge_flavour}, p = {c.bridge_patch_size}, hidden {c.bridge_hidden_size}, heads {c.bridge_num_heads}, depth {c.bridge_depth})"
    else:
        projector = {"none": "none (plain codebook)", "linear": "single Linear(d, d)", "mlp": "5-layer MLP"}[c.projector]
    if codebook_frozen:
        projector = "none: fine-tuned from a folded model, codebook frozen"
    departures = []
    if c.projector == "vqbridge" and c.bridge_output_init_std > 0:
        departures.append(
            f"the bridge's last Linear started from N(0, {c.bridge_output_init_std:g}²) instead of zeros, "
            "which keeps every code slot of a bridge token alive on small data"
        )
    if c.get("codebook_init_std") is not None:
        why = ", so the projector sees distinct inputs from the first step" if c.projector != "none" else ""
        departures.append(f"the raw codebook started from N(0, {c.codebook_init_std:g}²) instead of uniform(−1/K, 1/K){why}")
    init_note = f"Departure from the paper: {'; '.join(departures)}." if departures else ""
    card = render_model_card(
        "trained_tokenizer.md",
        card_data,
        title=repo_id,
        base_model=base_model,
        usage=f"{metrics['usage']:.2%}" if metrics else "not evaluated",
        used_codes=f"{evaluation.used_codes:,}" if evaluation else "?",
        codebook_size=f"{c.codebook_size:,}",
        perplexity=f"{metrics['perplexity']:.1f}" if metrics else "?",
        psnr=f"{metrics['psnr']:.2f}" if metrics else "?",
        ssim=f"{metrics['ssim']:.4f}" if metrics else "?",
        lpips=f"{metrics['lpips']:.4f}" if "lpips" in metrics else None,
        rfid=f"{metrics['rfid']:.2f}" if "rfid" in metrics else None,
        eval_images=evaluation.images if evaluation else 0,
        eval_data=eval_description or "held-out images",
        protocol=evaluation.protocol if evaluation else "",
        architecture=f"{tuple(c.block_out_channels)} channels, {c.layers_per_block} residual blocks per level, {model.downsample_factor}× downsampling",
        codebook_dim=c.codebook_dim,
        l2_normalize=c.l2_normalize,
        projector=projector,
        init_note=init_note,
        recipe=recipe or {},
        hardware=hardware or "not recorded",
        wall_time=f"{wall_time / 60:.1f} min" if wall_time is not None else "not recorded",
        repo_id=repo_id,
    )
    card.save(os.path.join(output_dir, "README.md"))
    summary = {"output_dir": output_dir, "metrics": metrics}
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi(token=hub_token)
        repo_id = api.create_repo(repo_id, private=hub_private or None, exist_ok=True).repo_id
        commit = api.upload_folder(repo_id=repo_id, folder_path=output_dir, ignore_patterns=_NOT_PUSHED, commit_message="Upload FVQ tokenizer")
        summary["hub_url"] = str(commit)
    return summary
