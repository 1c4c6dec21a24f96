"""Hostile image files given to `cellcount count`: empty, truncated, of the wrong format, lying about their size,
too small, stacks. Each gets a row whose error column names the file and says what to do (the other images are
still counted), or a correct count; a header claiming 100000 x 100000 pixels is refused before any pixel is
decoded (docs/RELIABILITY.md)."""

import re
import struct
import zlib

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from cellcount_core.images import image_io
from cellcount_core.counts.batch_count import count_files
from cellcount_core.images.image_checks import InsufficientMemoryError
from cellcount_core.images.image_io import read_image
from cellcount_core.images.synthetic import synthetic_cells


@pytest.fixture(scope="module")
def cells():
    """160 x 160 synthetic nuclei, 16-bit, with their true count."""
    found = synthetic_cells((160, 160), 16, (12, 18), seed=6)
    return found.image, found.count


def lying_png(path, height, width):
    """A PNG whose header (with a valid checksum) declares height x width pixels over 16 x 16 pixels of data."""
    iio.imwrite(path, np.zeros((16, 16), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def lying_tiff(path, height, width):
    """An uncompressed 8-bit TIFF whose tags declare height x width pixels over 100 bytes of data."""
    longs = [(256, width), (257, height), (273, 8 + 2 + 8 * 12 + 4), (278, height), (279, 100)]
    shorts = [(258, 8), (259, 1), (262, 1)]
    entries = sorted([(tag, struct.pack("<HHII", tag, 4, 1, value)) for tag, value in longs]
                     + [(tag, struct.pack("<HHIHH", tag, 3, 1, value, 0)) for tag, value in shorts])
    directory = struct.pack("<H", len(entries)) + b"".join(entry for _, entry in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + directory + bytes(100))


def rows_for(paths):
    return list(count_files(paths, device="CPU", progress=False))


@pytest.fixture
def never_decoded(monkeypatch):
    """Fails the test if any pixel data is decoded."""
    def refuse(path):
        raise AssertionError(f"{path} was decoded")

    monkeypatch.setattr(image_io, "_decode", refuse)


def test_a_png_header_claiming_100000_squared_pixels_is_refused_before_decoding(tmp_path, never_decoded):
    lying_png(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(ValueError, match=f"^{tmp_path / 'huge.png'}: its header declares more pixels than Pillow "
                                         "decodes safely .*10000000000 pixels.*refused before decoding"):
        read_image(tmp_path / "huge.png")


def test_a_tiff_header_claiming_100000_squared_pixels_is_refused_before_allocating(tmp_path, never_decoded):
    lying_tiff(tmp_path / "huge.tif", 100_000, 100_000)
    assert image_io.image_header(tmp_path / "huge.tif") == ((100_000, 100_000), np.dtype(np.uint8))
    with pytest.raises(InsufficientMemoryError, match=f"^{tmp_path / 'huge.tif'} is 100000 x 100000 pixels: "
                                                      "counting it needs about 196.1 GB of memory, but"):
        read_image(tmp_path / "huge.tif")


def test_a_header_larger_than_its_data_is_a_read_error(tmp_path):
    lying_tiff(tmp_path / "short.tif", 300, 300)
    with pytest.raises(ValueError, match=f"^Could not read {tmp_path / 'short.tif'} as an image"):
        read_image(tmp_path / "short.tif")


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "is empty (0 bytes). Copy the image again"),
    ("text.png", b"hello, not an image", "as an image (cannot identify image file"),
    ("text.tif", b"hello, not an image", "as an image (not a TIFF file"),
])
def test_files_that_are_no_image_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_image(tmp_path / name)


def test_a_png_named_tif_is_a_read_error_and_a_jpeg_named_png_is_read(tmp_path, cells):
    image, _ = cells
    iio.imwrite(tmp_path / "cells.png", (image >> 8).astype(np.uint8))
    (tmp_path / "png.tif").write_bytes((tmp_path / "cells.png").read_bytes())
    with pytest.raises(ValueError, match="whose format matches its suffix"):
        read_image(tmp_path / "png.tif")
    iio.imwrite(tmp_path / "jpeg.jpg", (image >> 8).astype(np.uint8), quality=95)
    (tmp_path / "jpeg.png").write_bytes((tmp_path / "jpeg.jpg").read_bytes())
    assert read_image(tmp_path / "jpeg.png").shape == image.shape


def test_singleton_planes_are_dropped_but_a_1x1_image_stays_2d(tmp_path):
    tifffile.imwrite(tmp_path / "plane.tif", np.ones((1, 40, 30), np.uint16))
    assert read_image(tmp_path / "plane.tif").shape == (40, 30)
    iio.imwrite(tmp_path / "dot.png", np.ones((1, 1), np.uint8))
    assert read_image(tmp_path / "dot.png").shape == (1, 1)


def test_a_stack_is_named_with_its_planes(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.ones((5, 40, 30), np.uint16))
    with pytest.raises(ValueError, match="stack.tif holds 5 planes of 40 x 30 pixels .* Save one plane per file"):
        read_image(tmp_path / "stack.tif")


def test_a_folder_of_hostile_files_gives_one_row_each_and_counts_the_good_ones(tmp_path, cells):
    image, true_count = cells
    tifffile.imwrite(tmp_path / "a_good_16bit.tif", image)
    iio.imwrite(tmp_path / "b_good_rgba.png", np.dstack([(image >> 8).astype(np.uint8)] * 3
                                                         + [np.full(image.shape, 255, np.uint8)]))
    (tmp_path / "c_empty.png").write_bytes(b"")
    whole = (tmp_path / "b_good_rgba.png").read_bytes()
    (tmp_path / "d_truncated.png").write_bytes(whole[: len(whole) // 2])
    iio.imwrite(tmp_path / "e_dot.png", np.ones((1, 1), np.uint8))
    iio.imwrite(tmp_path / "f_strip.png", np.arange(5000, dtype=np.uint16)[None])
    iio.imwrite(tmp_path / "g_mask.png", ((image > np.median(image)) * 255).astype(np.uint8))
    lying_png(tmp_path / "h_huge.png", 100_000, 100_000)
    rows = {row["image"].rsplit("/", 1)[-1]: row for row in rows_for(sorted(tmp_path.iterdir()))}
    errors = {name: row["error"] for name, row in rows.items()}
    for good in ("a_good_16bit.tif", "b_good_rgba.png"):
        assert errors[good] == "" and abs(rows[good]["count"] - true_count) <= 2, rows[good]
    assert "c_empty.png is empty (0 bytes)" in errors["c_empty.png"]
    assert errors["d_truncated.png"].startswith(f"Could not read {tmp_path / 'd_truncated.png'} as an image")
    assert "e_dot.png is 1 x 1 pixels; the smallest image cellcount segments or counts is 8 x 8" in errors["e_dot.png"]
    assert "f_strip.png is 1 x 5000 pixels; the smallest" in errors["f_strip.png"]
    assert "g_mask.png is a binary mask" in errors["g_mask.png"]
    assert "h_huge.png: its header declares more pixels than Pillow decodes safely" in errors["h_huge.png"]
