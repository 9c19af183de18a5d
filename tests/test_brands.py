"""The brand images: the bundled ones and the brands service submission."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
import pytest

ROOT = Path(__file__).parent.parent
BUNDLED = ROOT / "custom_components/zevvy/brand"
SUBMISSION = ROOT / "brands/custom_integrations/zevvy"


@pytest.mark.parametrize("name", ["icon", "icon@2x", "logo", "logo@2x"])
def test_submission_follows_the_brands_rules(name: str) -> None:
    """Sizes, square icons, trimmed transparency; the same as the bundled."""
    path = SUBMISSION / f"{name}.png"
    assert path.read_bytes() == (BUNDLED / path.name).read_bytes()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGBA"
        width, height = image.size
        # Trimmed: the picture touches every edge.
        assert image.getchannel("A").getbbox() == (0, 0, width, height)
    scale = 2 if name.endswith("@2x") else 1
    if name.startswith("icon"):
        assert (width, height) == (256 * scale, 256 * scale)
    else:
        assert width >= height
        assert 128 * scale <= height <= 256 * scale
