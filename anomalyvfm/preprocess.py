"""Image reading (any mode, EXIF orientation), tiling (long images, and large ones with a tile size), and maps
back to the original size."""
from __future__ import annotations

import errno
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, bytes, BinaryIO]
ENCODED = (bytes, bytearray, memoryview, io.IOBase)  # an image file's bytes, or an open binary file, as one input
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm",
                              ".pbm"})  # what folder scans pick up (an explicitly named file is read whatever it is)


class ImageReadError(ValueError):
    """An input that is not a readable image; the message names the file and what is wrong."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _from_range(values: np.ndarray, top: float) -> np.ndarray:
    """Values on a 0..``top`` scale as rounded uint8 0..255 (clipped at both ends); float values are computed in their
    own precision, integers in float64."""
    values = np.asarray(values)
    values = values if values.dtype.kind == "f" else values.astype(np.float64)
    return np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


_warned_depth = False


def _warn_if_low_bit_depth(values: np.ndarray, name: str | None) -> None:
    """Once per process: 16-bit pixels that stay under 4096 are most likely a 10- or 12-bit camera's, which the full
    0–65535 scale turns nearly black. They are read as they are (a per-image scale would brighten dark images of the
    same product unevenly); the warning says so."""
    global _warned_depth
    if _warned_depth:  # said already: no pass over the pixels of every later image
        return
    high = int(values.max(initial=0))
    if not 0 < high < 4096:
        return
    _warned_depth = True
    warnings.warn(f"{name or 'a 16-bit image'}: its values stay under 4096 (at most {high}; 10- or 12-bit camera "
                  f"data?), read on the 16-bit scale it is nearly black (at most {round(high * 255 / 65535)} of 255 "
                  f"grey levels) and the model sees little of it; convert such images to 8 bits on their camera's "
                  f"range first (said once)", stacklevel=2)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image -> uint8 RGB (H, W, 3). 16-bit and float images are scaled from their type's full range
    (16-bit: 0..65535); transparency is composited onto black."""
    name = getattr(image, "filename", None)  # the file it was opened from (lost by the transpose)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image)
        if image.mode != "F":
            _warn_if_low_bit_depth(values, name)
        grey = _from_range(values, 1.0 if image.mode == "F" else 65535.0)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        return (rgba[..., :3] * (rgba[..., 3:] / 255.0) + 0.5).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


MAX_PIXELS = 64_000_000  # larger images are refused before decoding (64 MP: 8000 × 8000)
MAX_TILES = 16  # an image more elongated than 16:1 would need more tiles than this: refused
MAX_GRID_TILES = 256  # with a ``tile_size``, an image that needs more tiles than this is refused
MIN_SIDE = 14  # a side shorter than one backbone patch holds nothing to score (a placeholder, an icon): refused
BLANK_LEVELS = 2  # an image whose pixels all lie within this many grey levels holds nothing to inspect: refused


def check_size(height: int, width: int, tile_size: int = 0) -> str | None:
    """Why an image of this size is refused (a bound on memory and on tiles), or None when it is fine."""
    if height < 1 or width < 1:
        return f"has no pixels ({width}×{height})"
    if height * width > MAX_PIXELS:
        return (f"too large: {width}×{height} = {height * width / 1e6:.0f} MP, over the {MAX_PIXELS / 1e6:.0f} MP "
                f"limit; downscale or crop it first")
    if max(height, width) > MAX_TILES * min(height, width):
        return (f"aspect ratio {max(height, width)}:{min(height, width)} is beyond {MAX_TILES}:1 (it would need more "
                f"than {MAX_TILES} tiles); crop it into parts first")
    if min(height, width) < MIN_SIDE:
        return (f"too small: {width}×{height}; a side under {MIN_SIDE} px (one patch) holds nothing to score; is it a "
                f"placeholder or an icon?")
    if tile_size and min(height, width) > tile_size:
        n = math.ceil(height / tile_size) * math.ceil(width / tile_size)
        if n > MAX_GRID_TILES:
            return (f"{width}×{height} cut into tiles of {tile_size} px needs {n} of them, over the {MAX_GRID_TILES} "
                    f"limit; use a larger tile size or downscale it first")
    return None


def check_blank(rgb: np.ndarray) -> str | None:
    """Why a decoded uint8 image is refused for holding no picture (a covered lens, a failed capture), or None."""
    low, high = int(rgb.min(initial=255)), int(rgb.max(initial=0))
    if high - low > BLANK_LEVELS:
        return None
    return (f"blank: every pixel lies within {BLANK_LEVELS} grey levels ({low}–{high}), nothing to inspect; a covered "
            f"lens or a failed capture?")


def _unless_blank(name: str, rgb: np.ndarray) -> np.ndarray:
    refused = check_blank(rgb)
    if refused:
        raise ImageReadError(name, refused)
    return rgb


def read_image(path: str | os.PathLike | BinaryIO) -> np.ndarray:
    """Read an image file (a path, or an open binary file such as ``io.BytesIO``) as uint8 RGB, raising
    ``ImageReadError`` with a one-line reason on any failure (a blank picture included: ``check_blank``)."""
    named = isinstance(path, (str, os.PathLike))
    name = str(path) if named else "<encoded image>"
    try:
        if named and os.path.getsize(path) == 0:
            raise ImageReadError(name, "empty file (0 bytes)")
        with Image.open(path) as image:
            refused = check_size(image.height, image.width)  # from the header, before decoding
            if refused:
                raise ImageReadError(name, refused)
            image.load()
            rgb = to_rgb(image)
        return _unless_blank(name, rgb)
    except ImageReadError:
        raise
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(name) else "no such file"
        raise ImageReadError(name, reason) from None
    except IsADirectoryError:
        raise ImageReadError(name, "is a directory, not an image") from None
    except PermissionError:
        raise ImageReadError(name, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(name, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(name, f"too large to decode safely ({str(e).split('.')[0]})") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageReadError(name, "symbolic link loop") from None
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageReadError(name, f"corrupt or truncated image ({reason})") from None
    except (SyntaxError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageReadError(name, f"corrupt or truncated image ({reason})") from None


def load(item: ImageInput) -> np.ndarray:
    """A path, PIL image, an image file's encoded bytes (or an open binary file) or an array (H, W), (H, W, 1|3|4)
    -> uint8 RGB; arrays of other types as ``_to_uint8`` reads them."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(item)
    if isinstance(item, Image.Image):
        return _unless_blank("<PIL image>", to_rgb(item))
    if isinstance(item, ENCODED):
        if isinstance(item, io.IOBase):
            return read_image(item)
        if not len(item):
            raise ImageReadError("<encoded image>", "empty (0 bytes)")
        return read_image(io.BytesIO(bytes(item)))
    if not isinstance(item, (np.ndarray, list, tuple)) and not hasattr(item, "__array__"):
        raise ValueError(f"cannot read a {type(item).__name__} as an image: give a path, PIL image, array or an image "
                         f"file's bytes")
    array = np.asarray(item)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
    array = array if array.dtype == np.uint8 else _to_uint8(array)
    array = array[..., :3] if array.shape[2] == 4 else array
    return _unless_blank("<array>", np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixels of another type as uint8: bool as 0/255, uint16 from its full range (as 16-bit files are read), floats
    from [0, 1] (from 0-255 when they exceed 1), other integers when they lie in 0-255."""
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"image array of dtype {array.dtype} holds no pixel values")
    if array.dtype == np.uint16:
        _warn_if_low_bit_depth(array, "a uint16 image array")
        return _from_range(array, 65535.0)
    if not np.isfinite(array).all():
        raise ValueError("image array has NaN or infinite pixels")
    low, high = float(array.min(initial=0)), float(array.max(initial=0))
    if np.issubdtype(array.dtype, np.floating) and low >= -1e-3 and high <= 1 + 1e-3:
        return _from_range(array, 1.0)
    if low < -0.5 or high > 255.5:
        raise ValueError(f"image array's pixels run from {low:g} to {high:g}: expected [0, 1] floats, 0-255 or uint16 "
                         f"(not normalised values)")
    return _from_range(array, 255.0)


def as_inputs(images) -> list:
    """The inputs as a list: one path, PIL image, image file's bytes (or open file) or array of up to three dimensions
    is one image (a string is never read character by character); any other iterable, an (N, H, W[, C]) array
    included, gives one image per item."""
    if isinstance(images, (str, os.PathLike, Image.Image, *ENCODED)) or (isinstance(images, np.ndarray)
                                                                         and images.ndim <= 3):
        return [images]
    try:
        return list(images)
    except TypeError:
        raise TypeError(f"images must be a path, PIL image, array or an image file's bytes, or an iterable of them; "
                        f"got {type(images).__name__}") from None


@dataclass(frozen=True)
class Tile:
    """A square (or, untiled, the whole image) crop: rows y0:y1, columns x0:x1 of the original."""

    y0: int
    y1: int
    x0: int
    x1: int


def plan_tiles(height: int, width: int, max_aspect: float, tile_size: int = 0) -> list[Tile]:
    """The whole image when its aspect ratio is within ``max_aspect``; otherwise overlapping squares of the
    shorter side, evenly spaced along the longer one, so nothing is squashed. With ``tile_size`` (pixels of the
    original), an image whose shorter side exceeds it is cut into a grid of overlapping squares of that side
    instead, so that a defect a few pixels wide is not shrunk away by the resize."""
    short, long = min(height, width), max(height, width)
    if tile_size and short > tile_size:
        return [Tile(y, y + tile_size, x, x + tile_size)
                for y in _starts(height, tile_size) for x in _starts(width, tile_size)]
    if long <= max_aspect * short:
        return [Tile(0, height, 0, width)]
    starts = _starts(long, short)
    if height >= width:
        return [Tile(s, s + short, 0, width) for s in starts]
    return [Tile(0, height, s, s + short) for s in starts]


def _starts(length: int, side: int) -> list[int]:
    """Offsets of the fewest squares of ``side`` that cover ``length``, evenly spaced (so they overlap)."""
    n = math.ceil(length / side)
    return [int(v) for v in np.linspace(0, length - side, n).round()]


def crop_and_resize(rgb: np.ndarray, tile: Tile, resolution: int) -> np.ndarray:
    """Crop a tile and resize it (bicubic, antialiased) to a square of ``resolution``."""
    crop = rgb[tile.y0:tile.y1, tile.x0:tile.x1]
    if crop.shape[:2] == (resolution, resolution):
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(crop).resize((resolution, resolution), Image.BICUBIC))


def resize_square(rgb: np.ndarray, resolution: int) -> np.ndarray:
    """The whole image resized (bicubic, antialiased) to a square of ``resolution``."""
    return crop_and_resize(rgb, Tile(0, rgb.shape[0], 0, rgb.shape[1]), resolution)


def normalize(batch: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) normalised."""
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)


def stitch(maps: list[np.ndarray], tiles: list[Tile], height: int, width: int) -> np.ndarray:
    """Resize each tile's map to its crop and average overlaps into one float32 (height, width) map."""
    if len(tiles) == 1:
        return cv2.resize(maps[0], (width, height), interpolation=cv2.INTER_LINEAR)
    total = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    for m, t in zip(maps, tiles):
        total[t.y0:t.y1, t.x0:t.x1] += cv2.resize(m, (t.x1 - t.x0, t.y1 - t.y0), interpolation=cv2.INTER_LINEAR)
        count[t.y0:t.y1, t.x0:t.x1] += 1.0
    return total / count


def describe(item: ImageInput, index: int) -> str:
    """A name for an input in messages and result files (an open file's own name)."""
    if isinstance(item, io.IOBase) and isinstance(getattr(item, "name", None), str):
        return item.name
    return str(item) if isinstance(item, (str, os.PathLike, Path)) else f"<image {index}>"
