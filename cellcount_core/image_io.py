"""Reading images from disk and finding them in folders (TIFF through tifffile, other formats through imageio)."""

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


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


def read_image(path):
    """A 2-D (or H x W x channels) array read from an image file.

    Raises
    ------
    ValueError
        If the file cannot be read as an image, naming the file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            image = iio.imread(path)
    except Exception as error:  # every reader raises its own error types; report them all the same way
        raise ValueError(f"Could not read {path} as an image ({error}). Check that the file is a valid image.")
    image = np.squeeze(np.asarray(image))
    if image.ndim not in (2, 3):
        raise ValueError(f"{path} has shape {image.shape}; cellcount reads 2-D grayscale or colour images.")
    return image
