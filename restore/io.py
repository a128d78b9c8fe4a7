"""Reading and writing images, arrays and JSON; every user-facing failure is a one-line RestoreError."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .errors import RestoreError, RestoreWarning

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Luma weights of ITU-R BT.601, the ones PIL's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)

# PIL's decoders report broken files through many exception types, not only OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


def _one_line(exc: BaseException) -> str:
    """The exception's message with whitespace collapsed, so an error stays on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_input_file(path: Path, what: str) -> None:
    """Raise a RestoreError unless ``path`` is an existing file."""
    if not path.exists():
        if path.is_symlink():  # a link to nowhere, or a loop of links
            try:
                path.resolve(strict=True)
                reason = "a symbolic link to a file that does not exist"
            except RuntimeError:
                reason = "a loop of symbolic links"
            except OSError as exc:
                reason = ("a loop of symbolic links" if getattr(exc, "errno", None) == 40
                          else "a symbolic link to a file that does not exist")
            raise RestoreError(f"cannot read {what} '{path}': it is {reason}")
        raise RestoreError(f"cannot read {what} '{path}': file does not exist")
    if path.is_dir():
        raise RestoreError(f"cannot read {what} '{path}': it is a folder, expected a file")


# ---------------------------------------------------------------------------------------------
# Writing safely


def output_path_check(path: str | os.PathLike) -> Path:
    """Raise a RestoreError unless ``path`` can be written as a file; return it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise RestoreError(f"output path '{path}' is a folder, expected a file name")
    parent = path.parent
    if not parent.exists():
        raise RestoreError(f"output folder '{parent}' does not exist")
    if not parent.is_dir():
        raise RestoreError(f"output folder '{parent}' is not a folder")
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the body succeeds."""
    path = output_path_check(path)
    # A hidden name in the same folder, so os.replace is a rename on one file system.
    # O_EXCL with mode 0o666 gives the usual umask permissions (mkstemp would give 0o600).
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise RestoreError(f"cannot write '{path}': {_one_line(exc)}") from None
    else:
        raise RestoreError(f"cannot write '{path}': no free temporary file name in '{path.parent}'")
    os.close(fd)
    try:
        yield tmp
        if _GROUP is not None:
            _GROUP.append((tmp, path))  # renamed when together() ends
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        # A full disk or a lost folder while writing: one line, not a traceback (safetensors raises its own).
        if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
            raise RestoreError(f"cannot write '{path}': {_one_line(exc)}") from None
        raise


#: Renames that together() holds back: (temporary file, final path).
_GROUP: list | None = None


@contextlib.contextmanager
def together() -> Iterator[None]:
    """The files written inside (by atomic_write) land together or not at all: each is written to its
    temporary name, and only when every one has been written are they all renamed into place; if any
    fails, every temporary file is removed and no output appears."""
    global _GROUP
    if _GROUP is not None:  # nested: the outer group decides
        yield
        return
    _GROUP = []
    try:
        yield
        for tmp, path in _GROUP:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in _GROUP:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _GROUP = None


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    # Serialise first so an unserialisable object fails before any file is touched.
    text = json.dumps(obj, indent=2) + "\n"
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Images


def _open_image(path: Path, data: bytes | None = None):
    """The decoded PIL image, upright according to its EXIF orientation; from the file's bytes ``data``
    if given (``path`` then only names it)."""
    import warnings
    from io import BytesIO

    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            # Pillow only warns between 89 and 179 megapixels; such an image would not fit in memory as
            # floats on most machines, so it is refused like the larger ones.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path if data is None else BytesIO(data))
        with im:
            im.load()
            # Camera JPEGs store rotation as a tag; apply it so pixels match what viewers show.
            return ImageOps.exif_transpose(im)
    except Image.UnidentifiedImageError:
        raise RestoreError(f"cannot read image '{path}': not a recognised image file") from None
    except PermissionError:
        raise RestoreError(f"cannot read image '{path}': permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RestoreError(f"cannot read image '{path}': {_one_line(exc).rstrip('.')}; restore reads images of at most "
                           f"{Image.MAX_IMAGE_PIXELS} pixels (crop or tile it first)") from None
    except _DECODE_ERRORS as exc:
        reason = f"corrupt or truncated file ({_one_line(exc)})"
        raise RestoreError(f"cannot read image '{path}': {reason}") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# EXIF orientation -> the (H, W, C) array turned upright, as PIL's ImageOps.exif_transpose turns an image.
_UPRIGHT = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _png_header(head: bytes) -> tuple:
    """(bit depth, colour type) from the IHDR chunk of a PNG file's first bytes; () for any other file."""
    png = len(head) >= 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR"
    return (head[24], head[25]) if png else ()


def bit_depth(path: str | os.PathLike) -> int:
    """16 for an image file with 16 bits per sample (a 16-bit PNG or TIFF, gray or colour),
    else 8 (also for a file that cannot be read: read_image refuses it, with the reason): the depth in
    which ``restore`` writes what it restores from that file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            head = f.read(26)
        if header := _png_header(head):
            return 16 if header[0] == 16 else 8
        if head[:4] in _TIFF_SIGNATURES:  # PIL calls a 16-bit colour TIFF "RGB", and cannot open gray + alpha
            import tifffile

            with tifffile.TiffFile(path) as tif:
                found = _tiff_page(tif)
                if found is not None:  # read at 16 bits where tifffile can decode it, else at PIL's 8
                    return 8 if _decodable(tifffile, found[0]) else 16
        with Image.open(path) as im:
            return 16 if im.mode.startswith("I;16") or im.mode == "I" else 8
    except Exception:
        return 8


def _deep_png(path: Path, data: bytes, im) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit RGB, RGBA or gray + alpha PNG (its bytes ``data``) as _pixels returns an image, at its full
    precision: PIL has no mode for these and would keep 8 bits, so torchvision's libpng decoder reads the
    samples and PIL the EXIF orientation and a tRNS colour key. A torchvision that cannot decode 16 bits
    (before 0.20) leaves PIL's 8-bit reading ``im``, which has already checked the file."""
    import warnings
    from io import BytesIO

    from PIL import Image

    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec's
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_png

            samples = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except (ImportError, RuntimeError):
        return _pixels(im, path)
    raw = samples.to(torch.float32).permute(1, 2, 0).numpy()  # (H, W, C), the integer sample values
    with Image.open(BytesIO(data)) as original:
        orientation, key = original.getexif().get(0x0112, 1), original.info.get("transparency")
    raw = _UPRIGHT.get(orientation, lambda a: a)(raw)
    alpha = None
    if raw.shape[2] in (2, 4):  # the last channel is alpha
        raw, alpha = raw[:, :, :-1], raw[:, :, -1] / np.float32(65535)
    elif isinstance(key, tuple) and len(key) == 3:  # this RGB value is transparent
        alpha = (raw != np.asarray(key, dtype=np.float32)).any(axis=2).astype(np.float32)
    return raw / np.float32(65535), alpha


_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little, big endian; BigTIFF


class _NeedsCodec(Exception):
    """A TIFF whose 16-bit samples tifffile cannot decode without the imagecodecs package (LZW, among others)."""


def _tiff_page(tif):
    """(page, its photometric, its extra samples) when the first page holds 16-bit unsigned samples, more than
    one per pixel, gray or RGB (what PIL cannot read at full depth); else None."""
    page = tif.pages[0]
    photometric, extras = int(page.photometric), [int(e) for e in page.extrasamples]
    if (page.bitspersample != 16 or page.samplesperpixel < 2 or page.dtype != np.uint16
            or (photometric, page.samplesperpixel - len(extras)) not in ((1, 1), (2, 3))):
        return None
    return page, photometric, extras


def _decodable(tifffile, page) -> str | None:
    """None when tifffile can decode ``page``'s compression, else why not (one clause)."""
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]
    except KeyError:
        name = getattr(page.compression, "name", str(page.compression))
        return f"its 16-bit samples are {name}-compressed, which needs the imagecodecs package (pip install imagecodecs)"
    return None


def _deep_tiff(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A TIFF (its bytes ``data``) of 16-bit unsigned samples with more than one per pixel (RGB, RGBA, gray +
    alpha) as _pixels returns an image, at its full precision, upright by its Orientation tag. PIL reads such
    colour at 8 bits (a planar one wrongly) and gray + alpha not at all, so tifffile reads them. None for
    any other file, and where tifffile is missing or cannot parse the file: PIL's reading then stands. A
    compression that tifffile needs the imagecodecs package for raises _NeedsCodec, with the reason."""
    from io import BytesIO

    from PIL import Image

    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(BytesIO(data)) as tif:
            found = _tiff_page(tif)
            if found is None:
                return None  # 8 bits, one sample (PIL keeps 16), or not gray or RGB: PIL's reading
            page, photometric, extras = found
            limit = Image.MAX_IMAGE_PIXELS
            if limit and page.shape[page.axes.index("Y")] * page.shape[page.axes.index("X")] > limit:
                raise RestoreError(f"cannot read image '{path}': it has more than {limit} pixels; "
                                   "restore reads images of at most that many (crop or tile it first)")
            if (reason := _decodable(tifffile, page)) is not None:
                raise _NeedsCodec(reason)
            orientation = page.tags.get(274)
            samples = page.asarray()
    except (RestoreError, _NeedsCodec):
        raise
    except Exception:  # a file tifffile cannot parse: PIL's reading says what is wrong with it
        return None
    raw = samples if page.axes.endswith("S") else np.moveaxis(samples, 0, -1)  # (H, W, S) from YXS or SYX
    raw = _UPRIGHT.get(orientation.value if orientation is not None else 1, lambda a: a)(raw)
    raw = raw.astype(np.float32) / np.float32(65535)
    colours = raw.shape[2] - len(extras)
    pixels, alpha = raw[:, :, :colours], None
    if extras and extras[0] in (1, 2):  # the first extra sample is alpha: associated (premultiplied) or not
        alpha = raw[:, :, colours]
        if extras[0] == 1:
            pixels = np.where(alpha[:, :, None] > 0, pixels / np.maximum(alpha, 1e-12)[:, :, None], 0).clip(0, 1)
    return np.ascontiguousarray(pixels), alpha


#: (bit depth, colour type) of the PNGs PIL reads at 8 bits: 16-bit colour, gray + alpha, colour + alpha.
_DEEP_PNG = ((16, 2), (16, 4), (16, 6))


def _file_bytes(path: Path) -> bytes:
    """The bytes of an image file, read once (every decoder sees the same bytes, and a named pipe works);
    an unreadable file is one line."""
    try:
        return path.read_bytes()
    except PermissionError:
        raise RestoreError(f"cannot read image '{path}': permission denied") from None
    except OSError as exc:
        raise RestoreError(f"cannot read image '{path}': {_one_line(exc)}") from None


def _decode(path: Path, data: bytes):
    """(pixels and alpha at full depth as _pixels gives them, or None; PIL's image, or None) of an image file's
    bytes ``data``. A 16-bit colour or gray + alpha TIFF is read by tifffile alone (no PIL image); a 16-bit
    colour or gray + alpha PNG by libpng, beside PIL's image (its kind and orientation); any other file by PIL
    alone, which also refuses a broken file or a decompression bomb. A TIFF whose compression needs the
    imagecodecs package is PIL's 8 bits with a RestoreWarning, or one error line where PIL cannot read it."""
    codec = None
    if data[:4] in _TIFF_SIGNATURES:
        try:
            deep = _deep_tiff(path, data)
        except _NeedsCodec as exc:
            deep, codec = None, str(exc)
        if deep is not None:
            return deep, None
    try:
        im = _open_image(path, data)
    except RestoreError:
        if codec:  # PIL cannot read it either (gray + alpha)
            raise RestoreError(f"cannot read image '{path}': {codec}") from None
        raise
    if codec:  # PIL reads 8 of its 16 bits
        warnings.warn(f"'{path}' is read at 8 bits: {codec}", RestoreWarning, stacklevel=3)
    return (_deep_png(path, data, im) if _png_header(data[:26]) in _DEEP_PNG else None), im


def _pixels(im, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) float32 pixels in [0, 1] and an (H, W) float32 alpha or None."""
    mode = im.mode
    transparency = im.info.get("transparency")
    # 1. Bring the exotic modes to L, LA, RGB or RGBA; a tRNS colour key becomes an alpha channel.
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or transparency is not None else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("L", "RGB") and transparency is not None:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode in ("La", "RGBa"):
        im = im.convert(mode.upper())
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")

    # 2. 16-bit gray (I;16*) and PIL's 32-bit "I", which PNG readers use for 16-bit data.
    if im.mode.startswith("I;16") or im.mode == "I":
        raw = np.asarray(im)
        if im.mode == "I" and raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise RestoreError(f"cannot read image '{path}': pixel values outside the 16-bit range")
        alpha = None
        if isinstance(transparency, int):
            alpha = (raw != transparency).astype(np.float32)
        return raw.astype(np.float32)[:, :, None] / np.float32(65535), alpha

    # 3. 8-bit data: split the alpha channel off the colour channels.
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise RestoreError(f"cannot read image '{path}': unsupported image mode '{im.mode}'"
                           + (" (32-bit float or integer pixels have no fixed range: save it as an 8- or 16-bit "
                              "PNG or TIFF, or give the values as a measurement spec)" if im.mode in ("F", "I") else ""))
    raw = np.asarray(im).astype(np.float32) / np.float32(255)
    if raw.ndim == 2:
        raw = raw[:, :, None]  # (H, W, 1)
    if im.mode in ("LA", "RGBA"):
        return raw[:, :, :-1], raw[:, :, -1]
    return raw, None


def read_image(
    path: str | os.PathLike, *, mode: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read an image file as a (1, C, H, W) float32 tensor in [0, 1] and its (1, 1, H, W) alpha or None.

    ``mode`` None keeps the file's channels (C=1 gray, C=3 colour); "L" converts to luminance;
    "RGB" repeats a gray channel three times.
    """
    if mode not in (None, "L", "RGB"):
        raise RestoreError(f"image mode must be None, 'L' or 'RGB', got {mode!r}")
    path = Path(path)
    _check_input_file(path, "image")
    deep, im = _decode(path, _file_bytes(path))
    pixels, alpha = deep if deep is not None else _pixels(im, path)

    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].contiguous()  # (1, C, H, W)
    if mode == "L" and image.shape[1] == 3:
        weights = torch.tensor(_LUMA, dtype=image.dtype).view(1, 3, 1, 1)
        image = (image * weights).sum(dim=1, keepdim=True).clamp_(0, 1)
    elif mode == "RGB" and image.shape[1] == 1:
        image = image.repeat(1, 3, 1, 1)
    if alpha is not None:
        alpha = torch.from_numpy(np.ascontiguousarray(alpha))[None, None]  # (1, 1, H, W)
    return image, alpha


def gray_stored_as_rgb(image: torch.Tensor) -> bool:
    """Whether an (N, C, H, W) image is RGB with three equal channels: a gray photo stored as colour."""
    return image.shape[1] == 3 and bool((image[:, 1:] == image[:, :1]).all())


def read_images(path: str | os.PathLike, *, mode: str | None = None) -> tuple[torch.Tensor, list[Path]]:
    """Read one image file, or every image file of a folder (sorted), as an (N, C, H, W) tensor.

    Alpha channels are dropped. All images of a folder must have the same shape.
    """
    path = Path(path)
    if not path.exists():
        raise RestoreError(f"cannot read images from '{path}': no such file or folder")
    if not path.is_dir():
        return read_image(path, mode=mode)[0], [path]

    paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise RestoreError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder '{path}'")
    images = []
    for p in paths:
        image = read_image(p, mode=mode)[0]
        if images and image.shape != images[0].shape:
            first, odd = "x".join(map(str, images[0].shape[1:])), "x".join(map(str, image.shape[1:]))
            raise RestoreError(
                f"image '{p}' is {odd} (CxHxW) but '{paths[0]}' is {first}; all images in '{path}' must match"
            )
        images.append(image)
    return torch.cat(images), paths


def _to_uint(x: torch.Tensor, bits: int, path: Path, what: str) -> np.ndarray:
    """Clip to [0, 1], scale to the integer range of ``bits`` and round; (C, H, W) -> (H, W, C)."""
    x = x.detach().to("cpu", torch.float64)
    if torch.isnan(x).any():
        raise RestoreError(f"cannot write '{path}': the {what} contains NaN values")
    peak = 2**bits - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    return (x.clamp(0, 1) * peak).round().permute(1, 2, 0).numpy().astype(dtype)


def write_png(
    path: str | os.PathLike, image: torch.Tensor, *, alpha: torch.Tensor | None = None, bits: int = 8
) -> None:
    """Write a (1, C, H, W) or (C, H, W) image in [0, 1] (C = 1 or 3) as a PNG, atomically.

    ``alpha`` (1, 1, H, W) in [0, 1] adds an alpha channel; ``bits=16`` writes 16 bits per sample (65,536
    levels instead of 256), gray or colour, with or without alpha.
    """
    from PIL import Image

    path = output_path_check(path)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape)
        raise RestoreError(f"cannot write '{path}': expected shape (1, C, H, W) with C 1 or 3, got {shape}")
    if bits not in (8, 16):
        raise RestoreError(f"cannot write '{path}': bits must be 8 or 16, got {bits}")
    pixels = _to_uint(image, bits, path, "image")  # (H, W, C)
    if alpha is not None:
        # Any of (1, 1, H, W), (1, H, W) or (H, W) is one alpha plane of the image's size.
        if alpha.ndim < 2 or alpha.shape[-2:] != image.shape[1:] or alpha.numel() != image[0].numel():
            shapes = f"{tuple(alpha.shape)} does not match image {tuple(image.shape)}"
            raise RestoreError(f"cannot write '{path}': alpha of shape {shapes}")
        alpha_pixels = _to_uint(alpha.reshape(1, *image.shape[1:]), bits, path, "alpha")  # (H, W, 1)
        pixels = np.concatenate([pixels, alpha_pixels], axis=2)
    with atomic_write(path) as tmp:
        try:
            if bits == 16:  # PIL writes 16 bits only for gray without alpha
                Path(tmp).write_bytes(_png16_bytes(pixels))
            else:  # fromarray picks L, LA, RGB or RGBA from the array's shape
                Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG")
        except OSError as exc:
            raise RestoreError(f"cannot write '{path}': {_one_line(exc)}") from None


def _png16_bytes(pixels: np.ndarray) -> bytes:
    """A PNG file of (H, W, C) uint16 samples, C = 1 to 4 (gray, gray + alpha, RGB, RGBA), as the PNG
    specification (ISO/IEC 15948) lays it out: big-endian samples, every row Paeth-filtered, deflated."""
    H, W, C = pixels.shape
    bpp = 2 * C  # bytes per pixel
    rows = pixels.astype(">u2").reshape(H, W * bpp // 2).view(np.uint8).astype(np.int16)  # (H, row bytes)
    left = np.pad(rows, ((0, 0), (bpp, 0)))[:, :-bpp]
    up = np.pad(rows, ((1, 0), (0, 0)))[:-1]
    up_left = np.pad(rows, ((1, 0), (bpp, 0)))[:-1, :-bpp]
    # Paeth predictor (filter type 4): of left, up and up-left, the one nearest left + up - up-left.
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    filtered = np.concatenate([np.full((H, 1), 4, np.int16), (rows - predicted) % 256], axis=1).astype(np.uint8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[C]
    header = struct.pack(">IIBBBBB", W, H, 16, colour_type, 0, 0, 0)  # no interlacing
    return (_PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6))
            + chunk(b"IEND", b""))


def write_grid(
    path: str | os.PathLike, images: torch.Tensor, *, nrow: int | None = None, padding: int = 2
) -> None:
    """Tile an (N, C, H, W) batch into one PNG, ``nrow`` images per row (default about sqrt(N))."""
    from torchvision.utils import make_grid

    if images.ndim != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape)
        raise RestoreError(f"cannot write '{path}': expected shape (N, C, H, W), C 1 or 3, got {shape}")
    if nrow is None:
        nrow = math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(images.detach().cpu().float(), nrow=nrow, padding=padding)
    # make_grid turns gray into three equal channels; keep gray files gray.
    if images.shape[1] == 1:
        grid = grid[:1]
    write_png(path, grid)


# ---------------------------------------------------------------------------------------------
# Arrays


def _array_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".npy"):
        raise RestoreError(f"unsupported array file '{path}': use a .safetensors or .npy file name")
    return suffix


def save_arrays(path: str | os.PathLike, arrays: dict[str, torch.Tensor]) -> None:
    """Save named tensors to .safetensors, or exactly one tensor to .npy, atomically."""
    from safetensors.torch import save_file

    path = output_path_check(path)
    suffix = _array_format(path)
    # Copies on the CPU: safetensors refuses views that share memory, and needs contiguous data.
    tensors = {
        str(name): torch.as_tensor(v).detach().cpu().clone(memory_format=torch.contiguous_format)
        for name, v in arrays.items()
    }
    if suffix == ".npy":
        if len(tensors) != 1:
            count = len(tensors)
            raise RestoreError(f"cannot write '{path}': a .npy file holds exactly one array, got {count}")
        (tensor,) = tensors.values()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            # A file object, because np.save appends ".npy" to names that lack it.
            np.save(f, tensor.numpy(), allow_pickle=False)
    else:
        with atomic_write(path) as tmp:
            mode = tmp.stat().st_mode & 0o777  # the umask's permissions, which safetensors' own file lacks (0600)
            save_file(tensors, str(tmp))
            os.chmod(tmp, mode)


def load_arrays(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load tensors from .safetensors (by name) or .npy (as {"array": tensor}); never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    suffix = _array_format(path)
    _check_input_file(path, "arrays")
    if suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            reason = f"not a valid safetensors file ({_one_line(exc)})"
            raise RestoreError(f"cannot read arrays '{path}': {reason}") from None

    try:
        # allow_pickle=False: a .npy of Python objects could run code when loaded.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RestoreError(f"cannot read arrays '{path}': not a valid .npy file ({_one_line(exc)})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise RestoreError(f"cannot read arrays '{path}': not a .npy file (looks like an .npz archive)")
    if not array.dtype.isnative:  # torch only takes native byte order
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return {"array": torch.from_numpy(array)}
    except TypeError:
        raise RestoreError(f"cannot read arrays '{path}': unsupported data type {array.dtype}") from None


def read_kernel(path: str | os.PathLike) -> torch.Tensor:
    """A blur kernel (kh, kw) as float64 from a .npy / .safetensors array or an image (8- or 16-bit gray
    PNG, full precision: 16-bit kernels keep their 65,536 levels); not normalised."""
    path = Path(path)
    _check_input_file(path, "kernel file")
    if path.suffix.lower() in (".npy", ".safetensors"):
        arrays = load_arrays(path)
        if len(arrays) != 1:
            raise RestoreError(f"kernel file '{path}' must hold exactly one array")
        kernel = next(iter(arrays.values())).squeeze()
        if kernel.is_complex() or kernel.dtype == torch.bool:
            raise RestoreError(f"kernel file '{path}' holds a {kernel.dtype} array; a kernel is real")
        kernel = kernel.double()
    else:
        im = _open_image(path)
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "L"):
            kernel = torch.from_numpy(np.asarray(im).astype(np.float64))
        elif im.mode in ("RGB", "RGBA", "LA", "P", "1"):
            kernel = torch.from_numpy(np.asarray(im.convert("L")).astype(np.float64))
        else:
            raise RestoreError(f"kernel image '{path}' has mode {im.mode!r}; save it as a gray PNG")
    if kernel.dim() != 2:
        raise RestoreError(f"kernel file '{path}' holds an array of shape {tuple(kernel.shape)}; a kernel is 2-D")
    return kernel
