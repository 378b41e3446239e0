import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import small_model
from PIL import Image
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from torchmetrics.image.fid import FrechetInceptionDistance

from fvq_hf import FVQModel
from fvq_hf.data import DemoCropDataset, collate_images
from fvq_hf.evaluation import (
    PROTOCOLS,
    ProtocolImageFolder,
    adm_center_crop,
    center_crop_no_resize,
    collate_protocol_images,
    evaluate_tokenizer,
    file_round_trip,
    prepare_image,
    psnr,
    psnr_y,
    quantize,
    ssim,
)
from fvq_hf.evaluation.inception import InceptionV3Features, resize_bilinear_tf1
from fvq_hf.evaluation.protocols import pil_to_uint8
from fvq_hf.hub import HubTarget, update_model_card
from fvq_hf.losses import LPIPS, AlexNetFeatures
from fvq_hf.training.outputs import save_trained_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """FID Inception weights in pytorch-fid's layout (with its fc head), made locally."""
    torch.manual_seed(0)
    model = InceptionV3Features()
    state = dict(model.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path


def test_inception_features_and_fid(inception_file):
    features = InceptionV3Features.from_pretrained(str(inception_file))
    assert sum(1 for k in features.state_dict() if k.endswith("running_mean")) == 94  # the graph's 94 convolutions
    images = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    assert features(images).shape == (4, 2048)
    fid = FrechetInceptionDistance(feature=features)
    fid.update(images, real=True)
    fid.update(images, real=False)
    assert abs(float(fid.compute())) < 1e-2  # identical sets
    with pytest.raises(FileNotFoundError, match="rFID needs pytorch-fid's"):
        InceptionV3Features.from_pretrained("nobody/no-inception")


def test_evaluator_counts_every_code_and_image():
    model = small_model()
    dataset = DemoCropDataset("heldout", resolution=32, num_samples=10, seed=0)
    result, pairs = evaluate_tokenizer(
        model, DataLoader(dataset, batch_size=4, collate_fn=collate_images), keep_first=3
    )
    indices = torch.cat([model.encode_indices(dataset[i][None]) for i in range(10)])
    assert result.images == 10 and result.used_codes == indices.unique().numel()
    assert result.extra["slots"] == 16 and 1 <= result.extra["live_slots"] <= 16
    assert pairs.shape == (2, 3, 3, 32, 32) and 5 < result.psnr < 60 and 0 < result.ssim <= 1


def test_evaluator_can_decode_a_few_images_and_count_the_codes_of_all(monkeypatch):
    model = small_model(codebook_init_std=0.02)
    dataset = DemoCropDataset("heldout", resolution=32, num_samples=10, seed=0)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_images)
    whole, _ = evaluate_tokenizer(model, loader)
    decoded = []
    real_decode = model.decode_quantized
    monkeypatch.setattr(model, "decode_quantized", lambda q: decoded.append(q.shape[0]) or real_decode(q))
    part, _ = evaluate_tokenizer(model, loader, reconstruct_images=6)
    # batches of 4, 4, 2: the second is split, the third only encoded
    assert decoded == [4, 2] and part.images == 6 and part.extra["usage_images"] == whole.extra["usage_images"] == 10
    assert part.used_codes == whole.used_codes and part.perplexity == whole.perplexity
    first_six = DataLoader(torch.utils.data.Subset(dataset, range(6)), batch_size=6, collate_fn=collate_images)
    six, _ = evaluate_tokenizer(model, first_six)
    assert abs(part.psnr - six.psnr) < 1e-4 and abs(part.ssim - six.ssim) < 1e-4
    decoded.clear()
    usage_only, _ = evaluate_tokenizer(model, loader, reconstruct_images=0)
    assert decoded == [] and usage_only.images == 0 and usage_only.used_codes == whole.used_codes


def test_evaluate_script_reports_rfid(tmp_path, inception_file):
    small_model().fold().save_pretrained(tmp_path / "model")
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "training" / "evaluate_tokenizer.py"),
            "--pretrained_model_name_or_path",
            str(tmp_path / "model"),
            "--resolution",
            "32",
            "--eval_samples",
            "8",
            "--inception_weights",
            str(inception_file),
            "--output_json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| rFID |" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["rfid"] is not None


def test_training_output_is_pushed_with_its_card(tmp_path, hub):
    model = small_model(codebook_init_std=0.02)
    dataset = DemoCropDataset("heldout", resolution=32, num_samples=4, seed=0)
    evaluation, _ = evaluate_tokenizer(model, DataLoader(dataset, batch_size=4, collate_fn=collate_images))
    (tmp_path / "out" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "out" / "checkpoints" / "checkpoint-1" / "optimizer.bin").write_bytes(b"state")
    save_trained_tokenizer(
        model,
        str(tmp_path / "out"),
        evaluation=evaluation,
        eval_description="demo",
        recipe={"steps": 1},
        hub=HubTarget("org/fvq-trained", token="hf_test"),
    )
    files = hub.files["org/fvq-trained"]
    assert {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "unfolded/config.json",
        "unfolded/diffusion_pytorch_model.safetensors",
        "README.md",
    } <= set(files)
    assert not any(name.startswith("checkpoints/") for name in files)
    card = files["README.md"].decode()
    assert "model-index" in card and "codebook usage" in card
    # the card says where the init departs from the paper
    assert "Departure from the paper" in card and "last Linear started from N(0, 0.02²)" in card
    assert "raw codebook started from N(0, 0.02²) instead of uniform(−1/K, 1/K)" in card
    assert (
        FVQModel.from_pretrained("org/fvq-trained", subfolder="unfolded", token="hf_test").config.projector
        == "vqbridge"
    )


# ------------------------------------------------------------------------------------ protocol steps
def _photo(height: int, width: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth random image (JPEG changes it a little, not beyond recognition)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    return image.convert(mode)


def test_center_crop_without_resize_is_the_central_pixels():
    image = _photo(300, 400)
    crop = center_crop_no_resize(image, 256)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[22:278, 72:328])
    # torchvision rounds the offset with Python's round: (257 − 256) / 2 = 0.5 → 0
    odd = _photo(257, 259)
    assert np.array_equal(np.asarray(center_crop_no_resize(odd, 256)), np.asarray(odd)[0:256, 2:258])
    # smaller than the crop: zero padding, the smaller half on the left/top (200 → 28 rows above, 28 below)
    small = center_crop_no_resize(_photo(200, 300), 256)
    padded = np.asarray(small)
    assert small.size == (256, 256) and not padded[:28].any() and not padded[228:].any() and padded[28:228].any()
    assert prepare_image(image, PROTOCOLS["fvq"], 256)["pixel_values"].shape == (3, 256, 256)


def test_adm_crop_resizes_the_short_side_first():
    image = _photo(300, 400)
    expected = np.asarray(image.resize((341, 256), Image.BICUBIC))[:, 42:298]
    assert np.array_equal(np.asarray(adm_center_crop(image, 256)), expected)
    big = _photo(600, 800, seed=1)  # short side ≥ 2 × 256: box-halved to 300 × 400 first
    halved = big.resize((400, 300), Image.BOX).resize((341, 256), Image.BICUBIC)
    assert np.array_equal(np.asarray(adm_center_crop(big, 256)), np.asarray(halved)[:, 42:298])
    assert not np.array_equal(
        np.asarray(adm_center_crop(big, 256)), np.asarray(big.resize((341, 256), Image.BICUBIC))[:, 42:298]
    )


def test_jpeg_round_trip_is_what_pillow_writes_to_a_jpeg_file(tmp_path):
    image = _photo(64, 64)
    image.save(tmp_path / "ILSVRC2012_val_00000001.JPEG")  # the file name sets the format, quality 75 by default
    on_disk = np.asarray(Image.open(tmp_path / "ILSVRC2012_val_00000001.JPEG").convert("RGB"))
    trip = np.asarray(file_round_trip(image, "JPEG", 75))
    assert np.array_equal(trip, on_disk) and not np.array_equal(trip, np.asarray(image))
    assert file_round_trip(image, "PNG") is image  # lossless: the uint8 array is the file
    image.save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(image))
    # the fvq reference is cut and stored in the image's own mode, converted to RGB only when read back
    grey = _photo(64, 64, mode="L")
    reference = prepare_image(grey, PROTOCOLS["fvq"], 32)["reference"]
    stored = np.asarray(file_round_trip(center_crop_no_resize(grey, 32), "JPEG").convert("RGB"))
    assert np.array_equal(reference.permute(1, 2, 0).numpy(), stored)


def test_quantization_follows_each_reference_code():
    x = torch.linspace(-1.01, 1.01, 20001)
    assert torch.equal(quantize(x, "round"), ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))  # FVQ
    assert torch.equal(quantize(x, "truncate"), (127.5 * x + 128.0).clamp(0, 255).to(torch.uint8))  # LlamaGen
    halves = torch.tensor([(2 * k + 1) / 255 - 1 for k in range(255)])  # (x + 1) · 127.5 = k + 0.5
    assert (quantize(halves, "round") != quantize(halves, "truncate")).sum() > 100  # to even vs up


def test_psnr_y_is_the_bt601_luma_psnr():
    torch.manual_seed(0)
    a = 0.2 + 0.6 * torch.rand(2, 3, 16, 16)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)

    def luma(t):
        return (16 + 65.481 * t[:, 0] + 128.553 * t[:, 1] + 24.966 * t[:, 2]) / 255

    mse = ((luma(a) - luma(b)) ** 2).mean(dim=(1, 2))
    assert torch.allclose(psnr_y(b, a), 10 * torch.log10(1 / (mse + 1e-8)), atol=1e-4)
    # an error luma does not see: red up, green down in the BT.601 ratio; RGB PSNR sees it
    shifted = a.clone()
    shifted[:, 0] += 0.001 * 128.553
    shifted[:, 1] -= 0.001 * 65.481
    assert psnr_y(shifted, a).min() > 60 and psnr(shifted * 2 - 1, a * 2 - 1).max() < 30


def _naive_gaussian_ssim(x, y, data_range):
    """piq.ssim's definition written window by window: 11 × 11 Gaussian (σ 1.5), windows inside the image."""
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    w = torch.outer(g, g) / torch.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = x.double(), y.double()
    values = []
    for c in range(x.shape[1]):
        maps = []
        for i in range(x.shape[2] - 10):
            for j in range(x.shape[3] - 10):
                px, py = x[0, c, i : i + 11, j : j + 11], y[0, c, i : i + 11, j : j + 11]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
                cov = (w * px * py).sum() - mx * my
                maps.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        values.append(torch.stack(maps).mean())
    return torch.stack(values).mean()


def test_ssim_matches_piq_and_scikit_image_and_data_range_2_inflates_it():
    from skimage.metrics import structural_similarity

    torch.manual_seed(0)
    a = F.interpolate(torch.rand(1, 3, 6, 6), size=(24, 24), mode="bicubic", align_corners=False).clamp(0, 1)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)  # a smooth image and a close reconstruction
    # FVQ's piq.ssim(data_range=2.) and its correct counterpart
    assert torch.allclose(ssim(b, a, data_range=2.0).double(), _naive_gaussian_ssim(b, a, 2.0), atol=1e-5)
    assert torch.allclose(ssim(b, a, data_range=1.0).double(), _naive_gaussian_ssim(b, a, 1.0), atol=1e-5)
    # LlamaGen's skimage structural_similarity(data_range=2.0, channel_axis=-1): 7 × 7 uniform, sample variances
    to_hwc = lambda t: t[0].permute(1, 2, 0).numpy()
    reference = structural_similarity(to_hwc(b), to_hwc(a), data_range=2.0, channel_axis=-1)
    assert ssim(b, a, data_range=2.0, window="uniform").item() == pytest.approx(reference, abs=1e-5)
    # data range 2 on [0, 1] images: larger constants pull SSIM towards 1, above the correct value
    for window in ("gaussian", "uniform"):
        assert ssim(b, a, 2.0, window).item() > ssim(b, a, 1.0, window).item() + 0.001
        assert ssim(a, a, 2.0, window).item() == pytest.approx(1.0)
    # piq average-pools large images first: 512 px is pooled by 2
    big_a = a.repeat_interleave(22, 2).repeat_interleave(22, 3)[..., :512, :512]
    big_b = (big_a + 0.1 * torch.randn_like(big_a)).clamp(0, 1)
    pooled = ssim(F.avg_pool2d(big_b, 2), F.avg_pool2d(big_a, 2), data_range=2.0, downsample=False)
    assert torch.allclose(ssim(big_b, big_a, data_range=2.0), pooled)


def test_tf1_resize_and_torch_fidelity_preprocessing(tmp_path):
    row = torch.tensor([0.0, 10.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    # TF1: output pixel i samples input i · 2 / 4, no half-pixel offset; PyTorch's half-pixel gives 0, 2.5, 7.5, 10
    assert torch.equal(resize_bilinear_tf1(row, 4)[0, 0, 0], torch.tensor([0.0, 5.0, 10.0, 10.0]))
    assert not torch.equal(
        F.interpolate(row, size=(4, 4), mode="bilinear", align_corners=False)[0, 0, 0],
        torch.tensor([0.0, 5.0, 10.0, 10.0]),
    )
    # torch-fidelity's weights file: the same names, fc head, and no num_batches_tracked
    torch.manual_seed(0)
    state = {k: v for k, v in InceptionV3Features().state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    torch.save(state, tmp_path / "weights-inception-2015-12-05-6726825d.pth")
    compat = InceptionV3Features.from_pretrained(
        str(tmp_path / "weights-inception-2015-12-05-6726825d.pth"), preprocessing="torch-fidelity"
    )
    assert compat.preprocessing == "torch-fidelity"
    images = (torch.rand(1, 3, 40, 40) * 255).to(torch.uint8)
    assert torch.equal(compat.preprocess(images), (resize_bilinear_tf1(images.float(), 299) - 128) / 128)
    half_pixel = F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    assert torch.equal(InceptionV3Features().preprocess(images), half_pixel)
    assert not torch.allclose(compat.preprocess(images), half_pixel, atol=1e-2)
    with pytest.raises(ValueError, match="preprocessing"):
        InceptionV3Features("tensorflow")


# ------------------------------------------------------------------------------------ protocols end to end
@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory):
    """Evaluation images as ImageNet val stores them: JPEG files of other sizes than the crop, one grey, one small."""
    root = tmp_path_factory.mktemp("val")
    _photo(40, 52, seed=0).save(root / "ILSVRC2012_val_00000001.JPEG", quality=90)
    _photo(48, 36, seed=1, mode="L").save(root / "ILSVRC2012_val_00000002.JPEG", quality=90)
    _photo(30, 44, seed=2).save(root / "ILSVRC2012_val_00000003.JPEG", quality=90)
    _photo(70, 90, seed=3).save(root / "ILSVRC2012_val_00000004.png")
    return root


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alexnet") / "alexnet.safetensors"
    save_file({k: v.contiguous() for k, v in AlexNetFeatures().state_dict().items()}, path)
    return path


def test_fvq_protocol_measures_what_the_official_code_measures(eval_folder, alexnet_file):
    model = small_model()
    dataset = ProtocolImageFolder(str(eval_folder), "fvq", resolution=32)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_protocol_images)
    lpips = LPIPS(str(alexnet_file), net="alex")
    result, _ = evaluate_tokenizer(model, loader, lpips=lpips, protocol="fvq")
    assert result.images == 4 and result.protocol_name == "fvq" and result.lpips_net == "alex"
    assert result.protocol_details["file_format"] == "JPEG" and "without resizing" in result.protocol
    # recomputed by hand from the official recipe: uint8 images in memory, Y-channel PSNR, piq SSIM at data range 2
    batch = collate_protocol_images([dataset[i] for i in range(4)])
    with torch.no_grad():
        reconstruction = model(batch["pixel_values"]).sample.clamp(-1, 1)
    a = quantize(batch["pixel_values"]).float() / 255
    b = quantize(reconstruction).float() / 255
    assert result.psnr == pytest.approx(psnr_y(b, a).mean().item(), rel=1e-4)
    assert result.ssim == pytest.approx(ssim(b, a, data_range=2.0).mean().item(), rel=1e-4)
    assert result.ssim_correct_range == pytest.approx(ssim(b, a, data_range=1.0).mean().item(), rel=1e-4)
    assert result.ssim > result.ssim_correct_range
    assert result.lpips == pytest.approx(lpips(b * 2 - 1, a * 2 - 1).mean().item(), rel=1e-4)
    # rFID sees the stored files: the JPEG reference crops and the JPEG-written, read-back reconstructions
    recorder = _RecordingFID("torch-fidelity")
    evaluate_tokenizer(
        model, DataLoader(dataset, batch_size=4, collate_fn=collate_protocol_images), fid=recorder, protocol="fvq"
    )
    (real,), (fake,) = recorder.real, recorder.fake
    assert torch.equal(real, batch["reference"]) and not torch.equal(real, quantize(batch["pixel_values"]))
    jpeg = [
        pil_to_uint8(file_round_trip(Image.fromarray(im.permute(1, 2, 0).numpy()), "JPEG"))
        for im in quantize(reconstruction)
    ]
    assert torch.equal(fake, torch.stack(jpeg)) and not torch.equal(fake, quantize(reconstruction))
    # a metric model of another protocol is refused, so no number carries the wrong protocol's name
    with pytest.raises(ValueError, match="measures LPIPS with 'alex'"):
        evaluate_tokenizer(model, loader, lpips=LPIPS(random_init=True), protocol="fvq")
    fid = FrechetInceptionDistance(feature=InceptionV3Features())
    with pytest.raises(ValueError, match="torch-fidelity"):
        evaluate_tokenizer(model, loader, fid=fid, protocol="fvq")


class _RecordingFID:
    """Stands in for torchmetrics' FID: keeps the images it is given."""

    def __init__(self, preprocessing):
        self.inception = SimpleNamespace(preprocessing=preprocessing)  # what the evaluator checks
        self.real, self.fake = [], []

    def update(self, images, real):
        (self.real if real else self.fake).append(images.clone())

    def compute(self):
        return torch.tensor(0.0)


def test_adm_protocol_measures_what_llamagen_measures(eval_folder):
    model = small_model()
    dataset = ProtocolImageFolder(str(eval_folder), "adm", resolution=32)
    batch = collate_protocol_images([dataset[i] for i in range(4)])
    recorder = _RecordingFID("torch-fidelity")
    result, _ = evaluate_tokenizer(
        model, DataLoader(dataset, batch_size=4, collate_fn=collate_protocol_images), fid=recorder, protocol="adm"
    )
    assert result.protocol_name == "adm" and "bicubic resize" in result.protocol
    with torch.no_grad():
        reconstruction = model(batch["pixel_values"]).sample.clamp(-1, 1)
    a = quantize(batch["pixel_values"]).float() / 255
    b = quantize(reconstruction, "truncate").float() / 255  # LlamaGen's uint8(clamp(127.5 x + 128))
    assert result.psnr == pytest.approx(
        (10 * torch.log10(1 / ((a - b) ** 2).mean(dim=(1, 2, 3)))).mean().item(), rel=1e-4
    )
    assert result.ssim == pytest.approx(ssim(b, a, data_range=2.0, window="uniform").mean().item(), rel=1e-4)
    assert result.ssim > result.ssim_correct_range
    # PNG is lossless: rFID sees the uint8 crops and reconstructions themselves
    assert torch.equal(recorder.real[0], quantize(batch["pixel_values"])) and torch.equal(
        recorder.fake[0], quantize(reconstruction, "truncate")
    )


def test_fast_protocol_is_unchanged_by_a_free_text_description():
    model = small_model()
    dataset = DemoCropDataset("heldout", resolution=32, num_samples=4, seed=0)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_images)
    described, _ = evaluate_tokenizer(model, loader, protocol="centre crop + resize, in memory")
    named, _ = evaluate_tokenizer(model, loader, protocol="fast")
    assert (
        described.protocol == "centre crop + resize, in memory"
        and described.protocol_name == named.protocol_name == "fast"
    )
    assert (described.psnr, described.ssim) == (named.psnr, named.ssim) and named.ssim_correct_range == named.ssim


def test_evaluate_script_fvq_protocol_writes_json_and_card(tmp_path, eval_folder, alexnet_file, inception_file):
    model_dir = tmp_path / "model"
    small_model().fold().save_pretrained(model_dir)
    (model_dir / "README.md").write_text(
        "---\nlibrary_name: fvq_hf\n---\n\n# my tokenizer\n\n## Evaluation\n\nold\n\n## Model\n\nx\n"
    )
    inception = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    inception.write_bytes(Path(inception_file).read_bytes())
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "training" / "evaluate_tokenizer.py"),
            "--pretrained_model_name_or_path",
            str(model_dir),
            "--protocol",
            "fvq",
            "--validation_data_dir",
            str(eval_folder),
            "--resolution",
            "32",
            "--batch_size",
            "2",
            "--alexnet_weights",
            str(alexnet_file),
            "--inception_weights",
            str(inception),
            "--dataset_label",
            "test images",
            "--output_json",
            str(tmp_path / "r.json"),
            "--update_model_card",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "| SSIM as published" in out.stdout
        and "| SSIM, correct data range 1 |" in out.stdout
        and "| LPIPS (AlexNet) |" in out.stdout
    )
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["protocol_name"] == "fvq" and result["protocol_details"]["inception"] == "torch-fidelity"
    assert result["rfid"] is not None and result["ssim_correct_range"] < result["ssim"] and result["images"] == 4
    card = (model_dir / "README.md").read_text()
    assert "rFID (fvq protocol)" in card and "PSNR (Y channel, BT.601) (fvq protocol)" in card and "config: fvq" in card
    assert card.index("### Evaluation, fvq protocol") < card.index("## Model") and "# my tokenizer" in card


def test_card_keeps_other_protocols_and_replaces_its_own(tmp_path):
    model = small_model()
    loader = DataLoader(
        DemoCropDataset("heldout", resolution=32, num_samples=2, seed=0), batch_size=2, collate_fn=collate_images
    )
    fast, _ = evaluate_tokenizer(model, loader, protocol="fast")
    path = tmp_path / "README.md"
    update_model_card(str(path), fast, dataset_name="demo")
    fvq_like = type(fast)(
        **{
            **fast.as_dict(),
            "protocol_name": "fvq",
            "ssim_correct_range": 0.5,
            "protocol_details": PROTOCOLS["fvq"].as_dict(),
        }
    )
    update_model_card(str(path), fvq_like, dataset_name="ImageNet val")
    update_model_card(str(path), fvq_like, dataset_name="ImageNet val")
    card = path.read_text()
    assert card.count("### Evaluation, fvq protocol") == 1 and card.count("### Evaluation, fast protocol") == 1
    assert (
        card.count("SSIM (correct: data range 1) (fvq protocol)") == 1
        and "(correct: data range 1) (fast protocol)" not in card
    )


def test_protocols_refuse_demo_crops_and_other_lpips(tmp_path, eval_folder):
    small_model().fold().save_pretrained(tmp_path / "model")
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import evaluate_tokenizer as script
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit, match="defined on image files"):
        script.main(["--pretrained_model_name_or_path", str(tmp_path / "model"), "--protocol", "fvq"])
    with pytest.raises(SystemExit, match="pass --alexnet_weights"):
        script.main(
            [
                "--pretrained_model_name_or_path",
                str(tmp_path / "model"),
                "--protocol",
                "adm",
                "--validation_data_dir",
                str(eval_folder),
                "--perceptual_weights",
                "x",
            ]
        )


def test_protocol_images_from_a_datasets_dataset(tmp_path):
    from fvq_hf.evaluation import protocol_hf_dataset

    for seed in range(3):
        _photo(40, 52, seed=seed).save(tmp_path / f"{seed}.png")
    dataset = protocol_hf_dataset(str(tmp_path), "adm", 32, image_column="image", split="train")
    batch = collate_protocol_images(list(dataset))
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["skipped"] == 0
    assert torch.equal(batch["reference"], quantize(batch["pixel_values"]))  # PNG: the reference is the crop itself
