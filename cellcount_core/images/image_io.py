"""Reading images from disk and finding them in folders (TIFF through tifffile, other formats through imageio),
with the size a file declares checked before its pixels are decoded."""

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
#: numpy dtypes of Pillow image modes other than 8-bit ones
PIL_MODE_DTYPES = {"I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int32, "F": np.float32,
                   "1": bool}


def list_images(inputs):
    """Image files named by ``inputs`` (files or folders; folders are listed, not recursed), sorted per folder.

    Raises
    ------
    FileNotFoundError
        If an input does not exist, or a folder holds no image file.
    """
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise FileNotFoundError(
                    f"The folder {item} holds no image file ({', '.join(IMAGE_SUFFIXES)}). "
                    "Name a folder of images or the image files themselves."
                )
            found.extend(files)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist. Check the path of the image or folder.")
    return found


def read_image(path, check_memory=True):
    """A 2-D (or H x W x channels) array read from an image file.

    The size the file's header declares is checked against the memory available before any pixel is decoded
    (:func:`cellcount_core.images.image_checks.check_memory`), so a header claiming 100000 x 100000 pixels is refused
    instead of allocated. Singleton planes and channels are dropped (a 1 x H x W TIFF is H x W); a 1 x 1 image
    stays 1 x 1.

    Raises
    ------
    ValueError
        If the file is empty, cannot be read as an image, or holds a stack of planes, naming the file.
    InsufficientMemoryError
        If the header declares more pixels than available memory can count (``check_memory=False`` skips it).
    """
    from cellcount_core.images import image_checks

    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). Copy the image again; it was not written completely.")
    shape, dtype = image_header(path)
    if check_memory:
        image_checks.check_memory(shape, dtype, source=str(path), loaded=False)
    try:
        image = _decode(path)
    except Exception as error:  # every reader raises its own error types; report them all the same way
        raise _unreadable(path, error) from None
    image = _drop_singleton_axes(np.asarray(image))
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        raise ValueError(f"{path} holds {image.shape[0]} planes of {image.shape[1]} x {image.shape[2]} pixels "
                         "(a stack or a multi-channel image); cellcount counts 2-D gray or RGB(A) images. "
                         "Save one plane per file.")
    if image.ndim not in (2, 3):
        raise ValueError(f"{path} has {image.ndim} dimensions {image.shape}; cellcount reads 2-D gray or RGB(A) "
                         "images. Save one plane per file.")
    return image


def image_header(path):
    """``(shape, dtype)`` that an image file's header declares, read without decoding its pixels.

    Raises
    ------
    ValueError
        If no header can be read, or (for PNG, JPEG, BMP) it declares more pixels than Pillow's
        decompression-bomb limit, naming the file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tiff:
                series = tiff.series[0]
                return tuple(series.shape), np.dtype(series.dtype)
        from PIL import Image

        with Image.open(path) as opened:
            width, height = opened.size
            bands = len(opened.getbands())
            dtype = PIL_MODE_DTYPES.get(opened.mode, np.uint8)
    except Exception as error:
        if type(error).__name__ == "DecompressionBombError":
            raise ValueError(f"{path}: its header declares more pixels than Pillow decodes safely ({error}); "
                             "refused before decoding. If the image is real, save it as TIFF.") from None
        raise _unreadable(path, error) from None
    return ((height, width) if bands == 1 else (height, width, bands)), np.dtype(dtype)


def _unreadable(path, error):
    return ValueError(f"Could not read {path} as an image ({error}). Check that the file is a complete image "
                      "whose format matches its suffix.")


def _decode(path):
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return iio.imread(path)


def _drop_singleton_axes(image):
    """Drop leading planes and a trailing channel of size 1, keeping two axes (so 1 x 1 stays 1 x 1)."""
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image
