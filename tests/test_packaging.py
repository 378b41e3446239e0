from importlib import resources
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_subpackage():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT / "src").parts) for init in (ROOT / "src" / "fvq_hf").rglob("__init__.py")
    }
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_model_card_templates_are_installed_with_the_package():
    templates = {p.name for p in resources.files("fvq_hf.model_cards").iterdir() if p.name.endswith(".md")}
    assert "converted_tokenizer.md" in templates
