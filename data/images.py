"""The one reader of image files: texture images, and the files evaluate.py --image classifies.

Pillow may decode a file only with the formats listed here, whatever the
file's name or first bytes claim: an EPS or PostScript file named drawing.png
would otherwise be handed to Ghostscript, an external program, and files come
from users and downloads. Anything else is a DataError naming the file.
"""
from typing import NamedTuple

import numpy as np
from PIL import Image

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
# The only decoders Pillow may use.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF, WebP or PPM"


class Decoded(NamedTuple):
    image: Image.Image      # 8-bit RGB, the file's size
    mode: str               # the file's own mode ("RGBA", "I;16", "P", ...)


def rgb8(image):
    """A PIL image as 8-bit RGB. 16-bit grayscale (mode I;16, or I as PIL reads some 16-bit
    files) is scaled by 255 / 65535, rounded; PIL's own convert would clip it to 255,
    white. Every other mode (L, P, RGBA, ...) goes through PIL's convert."""
    if image.mode.startswith("I;16") or image.mode == "I":
        levels = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) * (255 / 65535)
        image = Image.fromarray(np.rint(levels).astype(np.uint8), mode="L")
    return image.convert("RGB")


def read_rgb8(path, fix):
    """Decoded(8-bit RGB image, the file's mode) of the image file ``path``, decoded fully
    with IMAGE_FORMATS only; else a DataError "<path>: <why>. <fix>"."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            image.load()
            return Decoded(rgb8(image), image.mode)
    except FileNotFoundError:
        why = "no such file"
    except IsADirectoryError:
        why = "a directory, not an image file"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        why = f"cannot read it as an image ({err})"
    raise DataError(f"{path}: {why}. {fix}")
