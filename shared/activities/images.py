"""User photos: what the workflow sends (JPEG or PNG, at most Graph's 4 MB) becomes a JPEG within the event
task's size limit (default 100 kB), or is refused with the reason.

Graph takes ``PUT /users/{id}/photo/$value`` with ``Content-Type: image/jpeg``, "limited to 4 MB" by the size of
a REST request, and keeps HD sizes from 48 to 648 pixels (docs/graph-behaviour.md section 7;
https://learn.microsoft.com/graph/api/profilephoto-update). The image is decoded by Pillow (a real image, not
just the right first bytes), turned upright from its EXIF orientation, flattened onto white if it has
transparency, scaled to at most 648 pixels a side, and encoded as a baseline JPEG without metadata at falling
quality, then smaller sizes, until it fits.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # Graph's limit for one REST request, hence for a photo
MAX_SIDE_PX = 648  # the largest HD size Graph keeps
MIN_SIDE_PX = 48  # the smallest; a photo is not shrunk below it to fit a size limit
# Larger images are refused before any pixel is decoded (decompression bombs). A JPEG is decoded at a
# reduced scale (Pillow's draft: 1/2 to 1/8, still at least 648 pixels a side), so a large one costs little;
# a PNG has no reduced decoding: every pixel takes 4 bytes, and its copies (orientation, flattening) more, so
# its bound is lower. A PNG photo of at most 4 MB holds a few million pixels; a PNG with many more pixels in
# that size is a flat image or a bomb (a 140 kB PNG of 6000x6000 pixels needs over 300 MB to decode).
MAX_PIXELS = 40_000_000
MAX_PNG_PIXELS = 4096 * 4096
# Photos decoded at once per process: bounds the memory concurrent calls can take.
_DECODING = threading.BoundedSemaphore(2)
_QUALITIES = (88, 80, 72, 64, 56, 48, 40)
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


class PhotoRefused(ValueError):
    """The photo cannot be used; the message says why (it never contains the photo's bytes)."""


@dataclass(frozen=True)
class PreparedPhoto:
    data: bytes  # a JPEG
    width: int
    height: int
    source_format: str  # JPEG | PNG
    source_bytes: int


def _declared_format(data: bytes) -> str:
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            return name
    raise PhotoRefused("the photo must be a JPEG or PNG image; these bytes are neither")


def prepare_photo(data: bytes, *, max_bytes: int = 100_000) -> PreparedPhoto:
    """A JPEG of at most ``max_bytes`` from a JPEG or PNG of at most 4 MB."""
    if not data:
        raise PhotoRefused("the photo is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise PhotoRefused(
            f"the photo is {len(data):,} bytes; Graph accepts at most {MAX_UPLOAD_BYTES:,} bytes (4 MB)"
        )
    declared = _declared_format(data)
    with _DECODING:
        image = _decode(data, declared)
        image = ImageOps.exif_transpose(image)
        image = _flatten(image)
        image.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX), Image.Resampling.LANCZOS)
    while True:
        for quality in _QUALITIES:
            encoded = _encode(image, quality)
            if len(encoded) <= max_bytes:
                return PreparedPhoto(encoded, image.width, image.height, declared, len(data))
        if max(image.size) <= MIN_SIDE_PX:
            raise PhotoRefused(
                f"the photo cannot be made smaller than {max_bytes:,} bytes even at "
                f"{image.width}x{image.height} pixels; raise the event task's photo_max_bytes"
            )
        side = max(MIN_SIDE_PX, int(max(image.size) * 0.75))
        image.thumbnail((side, side), Image.Resampling.LANCZOS)


def _decode(data: bytes, declared: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[declared]) as probe:
                width, height = probe.size
                limit = MAX_PNG_PIXELS if declared == "PNG" else MAX_PIXELS
                if width * height > limit:
                    raise PhotoRefused(
                        f"the photo is {width}x{height} pixels; a {declared} of at most {limit:,} pixels "
                        "is accepted"
                    )
                probe.verify()  # checks the file's structure (PNG checksums, JPEG markers)
            image = Image.open(io.BytesIO(data), formats=[declared])
            if declared == "JPEG":
                image.draft("RGB", (MAX_SIDE_PX, MAX_SIDE_PX))  # decode at 1/2..1/8 scale where it can
            image.load()  # decodes every pixel: a truncated or corrupt file fails here
    except PhotoRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoRefused(f"the photo has more than {MAX_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        raise PhotoRefused(f"the photo starts like a {declared} file but is not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoRefused(f"the {declared} photo is damaged or truncated ({_reason(exc)})") from None
    return image


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _flatten(image: Image.Image) -> Image.Image:
    """RGB; transparent parts become white (JPEG has no alpha)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()
