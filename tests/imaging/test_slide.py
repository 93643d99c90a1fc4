"""Slide readers: every format through one interface, region reads equal crops, and bad input refused."""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from papscreen.errors import (
    CorruptImageError,
    DecompressionBombError,
    FileTooLargeError,
    UnreadableRegionError,
    UnsupportedImageError,
)
from papscreen.imaging.slides import (
    ArraySlideReader,
    OpenSlideReader,
    PlainImageReader,
    TiffReader,
    open_slide,
)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (600, 900, 3), dtype=np.uint8)


def _pyramid(a: np.ndarray) -> list[np.ndarray]:
    return [a, a[::2, ::2].copy(), a[::4, ::4].copy()]


def _write_separate_ifd_pyramid(path: Path, a: np.ndarray, mpp: float | None = 0.25) -> None:
    resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(_pyramid(a)):
            extra = resolution if i == 0 else {"subfiletype": 1}
            tw.write(level, tile=(256, 256), photometric="rgb", compression="zlib", **extra)


def _write_subifd_pyramid(path: Path, a: np.ndarray) -> None:
    with tifffile.TiffWriter(path) as tw:
        levels = _pyramid(a)
        tw.write(
            levels[0],
            tile=(256, 256),
            photometric="rgb",
            subifds=2,
            compression="zlib",
            metadata={"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        )
        for level in levels[1:]:
            tw.write(level, tile=(256, 256), photometric="rgb", subfiletype=1, compression="zlib")


# -- plain images ------------------------------------------------------------------------------------------
PLAIN_CASES = {
    "png-rgb": ("x.png", "RGB"),
    "png-grey": ("x.png", "L"),
    "png-rgba": ("x.png", "RGBA"),
    "png-palette": ("x.png", "P"),
    "png-16bit": ("x.png", "I;16"),
    "bmp-rgb": ("x.bmp", "RGB"),
    "tiff-rgb": ("x.tif", "RGB"),
    "tiff-grey": ("x.tif", "L"),
    "tiff-cmyk": ("x.tif", "CMYK"),
    "tiff-16bit": ("x.tif", "I;16"),
    "tiff-palette": ("x.tif", "P"),
    "jpeg-rgb": ("x.jpg", "RGB"),
    "jpeg-grey": ("x.jpg", "L"),
    "jpeg-cmyk": ("x.jpg", "CMYK"),
}


@pytest.mark.parametrize(("name", "mode"), PLAIN_CASES.values(), ids=PLAIN_CASES.keys())
def test_plain_images_read_as_one_level_rgb(tmp_path: Path, rgb: np.ndarray, name: str, mode: str) -> None:
    base = Image.fromarray(rgb[:120, :160])
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    elif mode == "P":
        image = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        image = base.convert(mode)
    path = tmp_path / name
    image.save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    with open_slide(path) as slide:
        assert isinstance(slide, PlainImageReader)
        assert slide.dimensions == (160, 120)
        assert slide.level_count == 1
        assert slide.level_downsamples == (1.0,)
        assert slide.mpp is None
        region = slide.read_region((10, 20), 0, (50, 40))
    assert region.shape == (40, 50, 3)
    assert region.dtype == np.uint8
    if mode not in {"RGBA", "I;16", "CMYK"}:  # those are normalised by to_rgb8 (composited / scaled)
        np.testing.assert_array_equal(region, expected[20:60, 10:60])


def test_plain_image_mpp_from_fine_resolution_only(tmp_path: Path, rgb: np.ndarray) -> None:
    fine, coarse = tmp_path / "fine.tif", tmp_path / "coarse.png"
    Image.fromarray(rgb).save(fine, dpi=(25400 / 0.5, 25400 / 0.5))  # 0.5 µm per pixel
    Image.fromarray(rgb).save(coarse, dpi=(300, 300))
    with open_slide(fine) as slide:
        assert slide.mpp == pytest.approx(0.5, rel=1e-3)
    with open_slide(coarse) as slide:
        assert slide.mpp is None


def test_region_outside_is_padded_white(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    with open_slide(path) as slide:
        region = slide.read_region((-10, 590), 0, (30, 20))
        far = slide.read_region((5000, 5000), 0, (8, 8))
    np.testing.assert_array_equal(region[:10, 10:], rgb[590:600, 0:20])
    assert (region[:, :10] == 255).all()
    assert (region[10:] == 255).all()
    assert (far == 255).all()


def test_region_arguments_are_checked(rgb: np.ndarray) -> None:
    slide = ArraySlideReader(rgb)
    with pytest.raises(ValueError, match="level 3 does not exist"):
        slide.read_region((0, 0), 3, (10, 10))
    with pytest.raises(ValueError, match="must be positive"):
        slide.read_region((0, 0), 0, (0, 10))


def test_array_reader_pyramid_and_thumbnail(rgb: np.ndarray) -> None:
    slide = ArraySlideReader(rgb, mpp=0.25, downsamples=(1, 2, 4))
    assert slide.level_dimensions == ((900, 600), (450, 300), (225, 150))
    assert slide.best_level_for_downsample(3) == 1
    # Level-0 location (100, 40) at level 2 starts at level pixel (25, 10).
    region = slide.read_region((100, 40), 2, (20, 10))
    expected = np.asarray(Image.fromarray(rgb).resize((225, 150), Image.Resampling.BOX))[10:20, 25:45]
    np.testing.assert_array_equal(region, expected)
    assert slide.thumbnail(90).shape == (60, 90, 3)


# -- OpenSlide ---------------------------------------------------------------------------------------------
def test_separate_ifd_pyramid_reads_through_openslide(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "pyramid.tif"
    _write_separate_ifd_pyramid(path, rgb)
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideReader)
        assert slide.level_count == 3
        assert slide.level_dimensions == ((900, 600), (450, 300), (225, 150))
        assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert slide.mpp == pytest.approx(0.25)
        assert slide.best_level_for_downsample(5) == 2
        np.testing.assert_array_equal(slide.read_region((130, 270), 0, (300, 200)), rgb[270:470, 130:430])
        np.testing.assert_array_equal(slide.read_region((400, 200), 1, (100, 60)), rgb[::2, ::2][100:160, 200:300])
        edge = slide.read_region((880, 590), 0, (40, 30))
        np.testing.assert_array_equal(edge[:10, :20], rgb[590:, 880:])
        assert (edge[10:] == 255).all()
        assert (edge[:, 20:] == 255).all()
        assert slide.thumbnail(225).shape == (150, 225, 3)


# -- tifffile ----------------------------------------------------------------------------------------------
def test_subifd_ome_pyramid_reads_through_tifffile(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "pyramid.ome.tif"
    _write_subifd_pyramid(path, rgb)
    with open_slide(path) as slide:
        assert isinstance(slide, TiffReader)
        assert slide.level_dimensions == ((900, 600), (450, 300), (225, 150))
        assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert slide.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(slide.read_region((130, 270), 0, (300, 200)), rgb[270:470, 130:430])
        np.testing.assert_array_equal(slide.read_region((400, 200), 1, (100, 60)), rgb[::2, ::2][100:160, 200:300])
        np.testing.assert_array_equal(slide.read_region((0, 0), 2, (225, 150)), rgb[::4, ::4])
        edge = slide.read_region((-5, 590), 0, (20, 30))
        np.testing.assert_array_equal(edge[:10, 5:], rgb[590:, :15])
        assert (edge[:, :5] == 255).all()
        assert (edge[10:] == 255).all()


TIFF_LAYOUTS = {
    "grey-8": (lambda a: a[..., 0], "minisblack", None),
    "grey-16": (lambda a: a[..., 0].astype(np.uint16) * 257, "minisblack", None),
    "rgb-16": (lambda a: a.astype(np.uint16) * 257, "rgb", None),
    "rgba": (lambda a: np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]), "rgb", "assoc"),
    "planar-rgb": (lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)), "rgb", "planar"),
}


@pytest.mark.parametrize(("make", "photometric", "extra"), TIFF_LAYOUTS.values(), ids=TIFF_LAYOUTS.keys())
def test_tiled_tiff_layouts_read_through_tifffile(
    tmp_path: Path, rgb: np.ndarray, make: object, photometric: str, extra: str | None
) -> None:
    path = tmp_path / "tiled.tif"
    kwargs: dict[str, object] = {"tile": (128, 128), "photometric": photometric, "compression": "zlib"}
    if extra == "assoc":
        kwargs["extrasamples"] = ("assocalpha",)
    if extra == "planar":
        kwargs["planarconfig"] = "separate"
    tifffile.imwrite(path, make(rgb), **kwargs)
    expected = rgb if photometric == "rgb" else np.repeat(rgb[..., :1], 3, axis=2)
    with open_slide(path) as slide:
        assert slide.dimensions == (900, 600)
        np.testing.assert_array_equal(slide.read_region((50, 70), 0, (300, 200)), expected[70:270, 50:350])


def test_striped_tiff_over_the_plain_limit_is_read_by_strips(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", rowsperstrip=16)
    with open_slide(path, max_image_pixels=100_000) as slide:
        assert isinstance(slide, TiffReader)
        np.testing.assert_array_equal(slide.read_region((3, 5), 0, (200, 100)), rgb[5:105, 3:203])


def test_large_tiled_level_decodes_only_the_tiles_a_region_needs(tmp_path: Path) -> None:
    """A 20000x20000 single-level tiled TIFF (1.2 GB of RGB) read 512x512 at a time, never whole."""
    path = tmp_path / "big.tif"
    side, tile = 20000, 512
    # A random 32x32 motif repeated: distinct pixels, yet zlib keeps the file small and quick to write.
    motif = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tile_pixels = np.tile(motif, (tile // 32, tile // 32, 1))

    def tiles():
        for row in range((side + tile - 1) // tile):
            for column in range((side + tile - 1) // tile):
                block = tile_pixels.copy()
                block[0, 0] = (row % 256, column % 256, 7)
                yield block

    tifffile.imwrite(
        path, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression="zlib"
    )
    with open_slide(path) as slide:
        assert slide.dimensions == (side, side)
        tracemalloc.start()
        region = slide.read_region((512 * 20 + 100, 512 * 30 + 200), 0, (512, 512))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert slide.segments_decoded == 4
        assert peak < 16 * 1024**2  # four tiles and the region, not 1.2 GB
        np.testing.assert_array_equal(region[:312, :412], tile_pixels[200:, 100:])
        assert region[312, 412].tolist() == [31, 21, 7]
        thumb = slide.thumbnail(256)
        assert thumb.shape == (256, 256, 3)


# -- bad input ---------------------------------------------------------------------------------------------
def _png_declaring(path: Path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.svs"
    path.touch()
    with pytest.raises(CorruptImageError, match=r"empty\.svs: file is empty"):
        open_slide(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorruptImageError, match="no such file"):
        open_slide(tmp_path / "gone.png")


def test_truncated_jpeg(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CorruptImageError, match=r"cut\.jpg: .*truncated"):
        open_slide(path)


@pytest.mark.parametrize("name", ["notes.png", "notes.tif", "notes.svs"])
def test_non_image_with_an_image_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("these are not pixels\n" * 50)
    with pytest.raises(CorruptImageError, match=rf"{name}: not a readable image"):
        open_slide(path)


def test_png_declaring_100000_by_100000_pixels_is_a_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _png_declaring(path, 100_000, 100_000)
    with pytest.raises(DecompressionBombError, match=r"bomb\.png: image declares 10,000,000,000 pixels") as info:
        open_slide(path)
    assert info.value.pixels == 10_000_000_000


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_unsupported_image_format(tmp_path: Path, rgb: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(rgb).save(path, format=fmt)
    with pytest.raises(UnsupportedImageError, match=f"{fmt} images are not supported"):
        open_slide(path)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UnsupportedImageError, match=r"data\.bin: unknown file format"):
        open_slide(path)


def test_file_over_the_size_limit(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(FileTooLargeError, match=r"x\.png: file is .* over the limit of 1,000 bytes"):
        open_slide(path, max_file_bytes=1000)


def test_plain_image_over_the_pixel_limit(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(DecompressionBombError):
        open_slide(path, max_image_pixels=1000)


def _corrupt_tile(path: Path, page_index: int, tile_index: int) -> None:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[page_index]
        offset, count = page.dataoffsets[tile_index], page.databytecounts[tile_index]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))


def test_corrupt_tile_in_tiled_tiff_names_file_and_region(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "damaged.ome.tif"
    _write_subifd_pyramid(path, rgb)
    _corrupt_tile(path, 0, 1)  # level 0, second tile of the first row: x 256..511, y 0..255
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region((0, 300), 0, (100, 100)), rgb[300:400, :100])
        with pytest.raises(UnreadableRegionError, match=r"damaged\.ome\.tif: .*x=300, y=10.*tile 1,0") as info:
            slide.read_region((300, 10), 0, (50, 50))
        assert info.value.location == (300, 10)
        assert info.value.size == (50, 50)
        # The reader stays usable after the error.
        np.testing.assert_array_equal(slide.read_region((600, 300), 0, (50, 50)), rgb[300:350, 600:650])


def test_corrupt_tile_through_openslide_names_file_and_region(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "damaged.tif"
    _write_separate_ifd_pyramid(path, rgb)
    _corrupt_tile(path, 0, 1)
    with open_slide(path) as slide, pytest.raises(UnreadableRegionError, match=r"damaged\.tif: .*x=300, y=10"):
        slide.read_region((300, 10), 0, (50, 50))


def test_truncated_tiff(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "cut.tif"
    _write_subifd_pyramid(path, rgb)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptImageError, match=r"cut\.tif"):
        open_slide(path)


def test_float_tiff_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, np.zeros((256, 256), np.float32), tile=(128, 128))
    with pytest.raises(UnsupportedImageError, match="float32"):
        open_slide(path)
