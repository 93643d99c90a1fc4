"""``probe_scan``: a readable scan is described, every bad one fails with one clear error naming the file."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from papscreen.config import LimitSettings
from papscreen.datasets.synthetic import SlidePlan, write_synthetic_slide
from papscreen.errors import (
    CorruptImageError,
    DecompressionBombError,
    FileTooLargeError,
    ImageError,
    UnreadableRegionError,
    UnsupportedImageError,
)
from papscreen.imaging.image_io import write_rgb
from papscreen.imaging.slides import ArraySlideReader
from papscreen.intake import probe
from papscreen.intake.probe import ScanInfo, probe_scan
from tests.bad_files import jpeg_declaring, png_declaring

LIMITS = LimitSettings()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "slide.tif"
    plan = SlidePlan(2048, 2048, tissue_blocks=((0, 0), (1, 1)), block_px=1024, seed=3)
    write_synthetic_slide(path, plan, tile_px=256, downsamples=(1, 4))
    return path


@pytest.mark.parametrize(
    ("name", "expected_format"),
    [("field.jpg", "jpeg"), ("field.png", "png"), ("field.tif", "tiff"), ("field.bmp", "bmp"), ("misnamed.jpg", "png")],
)
def test_good_fields_are_described(tmp_path: Path, rgb: np.ndarray, name: str, expected_format: str) -> None:
    path = tmp_path / name
    if name == "misnamed.jpg":  # a PNG saved under a .jpg name: the content decides
        Image.fromarray(rgb).save(path, format="PNG")
    else:
        write_rgb(path, rgb)
    assert probe_scan(path, LIMITS) == ScanInfo(format=expected_format, width=400, height=300, levels=1, kind="field")


def test_a_pyramid_is_a_slide(pyramid: Path) -> None:
    assert probe_scan(pyramid, LIMITS) == ScanInfo(format="tiff", width=2048, height=2048, levels=2, kind="slide")


def test_a_pyramid_cut_short_is_corrupt(pyramid: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tif"
    data = pyramid.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match=r"cut\.tif"):
        probe_scan(cut, LIMITS)


def test_a_pyramid_damaged_in_the_middle_is_caught(pyramid: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.tif"
    data = bytearray(pyramid.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20_000] = bytes(20_000)
    damaged.write_bytes(bytes(data))
    with pytest.raises(UnreadableRegionError, match=r"damaged\.tif"):
        probe_scan(damaged, LIMITS)


def _bad_scan(kind: str, folder: Path, rgb: np.ndarray) -> Path:
    if kind == "zero-byte":
        (path := folder / "empty.jpg").write_bytes(b"")
    elif kind == "truncated-jpeg":
        write_rgb(path := folder / "cut.jpg", rgb)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text-named-jpg":
        (path := folder / "report.jpg").write_text("Patient report, not an image\n" * 20)
    elif kind == "text":
        (path := folder / "notes.txt").write_text("Patient report, not an image\n" * 20)
    elif kind == "gif":
        Image.fromarray(rgb).save(path := folder / "scan.gif")
    elif kind == "bomb":
        png_declaring(path := folder / "bomb.png", 100_000, 100_000)
    else:
        path = folder / "missing.tif"
    return path


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        pytest.param("zero-byte", CorruptImageError, "file is empty (0 bytes)", id="zero-byte"),
        pytest.param("truncated-jpeg", CorruptImageError, "truncated", id="truncated-jpeg"),
        pytest.param("text-named-jpg", CorruptImageError, "although named .jpg", id="text-named-jpg"),
        pytest.param("text", UnsupportedImageError, "unknown file format", id="text"),
        pytest.param("gif", UnsupportedImageError, "GIF images are not supported", id="gif"),
        pytest.param("bomb", DecompressionBombError, "10,000,000,000 pixels", id="bomb"),
        pytest.param("missing", CorruptImageError, "no such file", id="missing"),
    ],
)
def test_bad_files_raise_one_clear_error(
    tmp_path: Path, rgb: np.ndarray, kind: str, error: type[ImageError], message: str
) -> None:
    path = _bad_scan(kind, tmp_path, rgb)
    with pytest.raises(error) as caught:
        probe_scan(path, LIMITS)
    assert type(caught.value) is error
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"not even an image, but the size decides first")
    with pytest.raises(FileTooLargeError, match="over the limit of 10 bytes") as caught:
        probe_scan(path, LimitSettings(max_file_bytes=10))
    assert caught.value.size_bytes == path.stat().st_size


def test_a_plain_image_over_the_pixel_limit_is_a_bomb(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "field.png"
    write_rgb(path, rgb)
    with pytest.raises(DecompressionBombError):
        probe_scan(path, LimitSettings(max_image_pixels=400 * 300 - 1))


class _RecordingSlide(ArraySlideReader):
    """An in-memory slide that remembers which regions were read."""

    def __init__(self, array: np.ndarray, downsamples: tuple[int, ...]) -> None:
        super().__init__(array, downsamples=downsamples)
        self.reads: list[tuple[tuple[int, int], int, tuple[int, int]]] = []

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        self.reads.append((location, level, size))
        return super().read_region(location, level, size)


def test_the_smallest_level_is_read_whole_and_level_0_in_its_middle() -> None:
    slide = _RecordingSlide(np.zeros((2048, 4096, 3), np.uint8), downsamples=(1, 4))
    probe._read_samples(slide)
    assert slide.reads == [((0, 0), 1, (1024, 512)), ((1792, 768), 0, (512, 512))]


def test_a_large_smallest_level_is_read_only_in_its_middle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "_WHOLE_LEVEL_PIXELS", 1000)
    slide = _RecordingSlide(np.zeros((2048, 4096, 3), np.uint8), downsamples=(1, 2))
    probe._read_samples(slide)
    assert slide.reads == [((1536, 512), 1, (512, 512)), ((1792, 768), 0, (512, 512))]


def test_a_jpeg_declaring_too_many_pixels_is_refused_as_a_bomb(tmp_path: Path) -> None:
    path = jpeg_declaring(tmp_path / "huge.jpg", 30_000, 10_000)  # 300 MP: over Pillow's own limit too
    with pytest.raises(DecompressionBombError, match="300,000,000 pixels"):
        probe_scan(path, LimitSettings())


def test_a_bmp_declaring_too_many_pixels_is_refused_from_its_header(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="BMP")
    data = bytearray(buffer.getvalue())
    data[18:26] = struct.pack("<ii", 60_000, 60_000)  # BITMAPINFOHEADER width and height
    (tmp_path / "huge.bmp").write_bytes(bytes(data))
    with pytest.raises(DecompressionBombError, match="3,600,000,000 pixels"):
        probe_scan(tmp_path / "huge.bmp", LimitSettings())


def test_a_palette_tiff_declaring_more_than_it_holds_is_refused_unread(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("P").save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tags = tif.pages.first.tags
        offsets = [(tags[name].valueoffset, tags[name].dtype) for name in ("ImageWidth", "ImageLength")]
    for offset, dtype in offsets:
        data[offset : offset + (2 if dtype == 3 else 4)] = (60_000).to_bytes(2 if dtype == 3 else 4, "little")
    (tmp_path / "huge.tif").write_bytes(bytes(data))
    with pytest.raises(CorruptImageError, match="tiles listed where"):
        probe_scan(tmp_path / "huge.tif", LimitSettings())


def test_probing_a_100_megapixel_16_bit_scan_stays_well_under_2_gb(tmp_path: Path) -> None:
    path = tmp_path / "black16.png"
    Image.fromarray(np.zeros((10_000, 10_000), np.uint16)).save(path)  # 194 KB on disk, 100 MP of 16-bit
    # The child's own peak (VmHWM starts afresh at exec; ru_maxrss would count the forked copy of this process).
    code = (
        "import re, sys; from pathlib import Path; from papscreen.config import LimitSettings; "
        "from papscreen.intake.probe import probe_scan; probe_scan(Path(sys.argv[1]), LimitSettings()); "
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    peak_mib = int(done.stdout.split()[-1]) / 1024
    assert peak_mib < 1536, f"probing took {peak_mib:.0f} MiB"  # 3.7 GB before: float64 copies
