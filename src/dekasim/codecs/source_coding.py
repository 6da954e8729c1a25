"""Image source coding for the digital baselines: real codecs through Pillow, rate-matched to a bit budget.

Four codecs, all encoded by Pillow's own wheels (``PIL.features``): ``"jpeg"`` (libjpeg, standard
Huffman tables, 4:2:0), ``"webp"`` (libwebp lossy, ``method=6``), ``"jpeg2000"`` (OpenJPEG, 9/7
irreversible wavelet with the RGB->YCbCr transform, one quality layer, raw codestream) and ``"avif"``
(libavif/AV1, 4:2:0, ``speed=8``, one thread). Each has a *quality grid*: index 0 is the smallest
file, the last index the best quality (JPEG quality 1..100, WebP and AVIF quality 0..100,
JPEG 2000 compression ratio 1000 .. 1 on a geometric grid of 128 steps).

**Rate matching.** :func:`rate_match` finds, by bisection over the quality grid (file size grows with
quality; libwebp and libavif wiggle by a few bytes at the very bottom), the highest quality whose
payload fits a byte budget. The result always fits: every candidate is measured, none is predicted.
:func:`encode_within_budget` does this for one codec or, with ``"best"``, for every codec and keeps
the one with the highest PSNR on the image.

**What is sent, bit for bit (the frame).** The budget counts every bit the receiver needs::

    [codec id: ceil(log2(#codecs)) bits, only when several codecs compete ("best")]
    [quality index: 7 bits, only with headers="stripped"]
    [payload length in bytes: L bits, L = bit length of the largest payload that fits]
    [payload bytes]
    [zero padding up to the budget]

A payload length of 0 means "nothing fitted": the receiver shows :data:`FALLBACK_VALUE` (mid-grey).

**How container and header bytes are counted** (``headers`` option):

- ``"full"``: the whole file as Pillow writes it (containers, markers, tables, the OpenJPEG comment).
  Simple and conservative; at 64x64 the container dominates small budgets (JPEG alone is ~620 B of
  header).
- ``"stripped"`` (default): the receiver knows the image size, the codec settings above and the
  quality index (sent, 7 bits), so it regenerates every byte that depends only on those and on the
  payload length, from a reference encode of a mid-grey image at the same quality:

  * JPEG: the header up to and including the SOS segment (JFIF APP0, DQT of that quality, SOF0,
    standard DHT, SOS) and the EOI marker; the entropy-coded scan is sent (an "abbreviated" JPEG
    stream, as the JPEG standard allows when the tables are known).
  * JPEG 2000: the main header (SIZ, COD, QCD), the SOT marker (its tile-part length is the payload
    length + 14), SOD and EOC; the OpenJPEG "Created by" comment is dropped (decoders ignore it).
    The tile data is sent.
  * WebP: the RIFF/WEBP/VP8 chunk headers (sizes follow from the payload length), the VP8 start
    code and the frame dimensions; the 3-byte VP8 frame tag and the compressed partitions are sent.
  * AVIF: the ``ftyp`` and ``meta`` boxes (only ``iloc``'s extent length and the ``mdat`` size
    depend on the payload), the ``mdat`` header, and the leading temporal-delimiter and sequence-header
    OBUs; the frame OBU(s) are sent.

  The sender checks on every encode that the receiver's regeneration reproduces the file exactly
  (JPEG 2000: the file without its comment); a file for which it does not is never sent (that
  quality is skipped with a warning), so no byte is silently assumed known.

Images are ``[H, W, 3]`` uint8 arrays here; :mod:`dekasim.codecs.digital` converts from the
``[3, H, W]`` float payloads of the simulator.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dekasim.errors import ConfigError

#: Source codecs dekasim knows, in the order of their codec id in the frame.
SOURCE_CODECS: tuple[str, ...] = ("jpeg", "webp", "jpeg2000", "avif")
#: ``headers`` option values.
HEADER_MODES: tuple[str, ...] = ("stripped", "full")
#: Bits of the quality index in a stripped frame (every grid has at most 128 entries).
QUALITY_BITS = 7
#: What the receiver shows for an image it did not get (mid-grey), in [0, 1] units.
FALLBACK_VALUE = 0.5

_PIL_FEATURE = {"jpeg": "jpg", "webp": "webp", "jpeg2000": "jpg_2000", "avif": "avif"}
_J2K_RATIOS = tuple(float(r) for r in np.geomspace(1000.0, 1.0, 128))
_GRIDS: dict[str, tuple[float, ...]] = {
    "jpeg": tuple(float(q) for q in range(1, 101)),
    "webp": tuple(float(q) for q in range(0, 101)),
    "avif": tuple(float(q) for q in range(0, 101)),
    "jpeg2000": _J2K_RATIOS,
}


def available_source_codecs() -> tuple[str, ...]:
    """The source codecs this Pillow build can encode and decode."""
    from PIL import features

    return tuple(c for c in SOURCE_CODECS if features.check(_PIL_FEATURE[c]))


def check_source_codec(name: object, field: str = "source_codec", allow_best: bool = True) -> str:
    """Validate a source codec name (``"best"`` allowed when ``allow_best``); raise ConfigError."""
    choices = (("best",) if allow_best else ()) + SOURCE_CODECS
    if name not in choices:
        raise ConfigError(field, name, f"one of {list(choices)}")
    if name != "best" and name not in available_source_codecs():
        raise ConfigError(field, name, f"a codec this Pillow build encodes: {list(available_source_codecs())}",
                          "install a Pillow wheel with that codec, or pick another one")
    return str(name)


def check_headers(mode: object) -> str:
    if mode not in HEADER_MODES:
        raise ConfigError("headers", mode, f"one of {list(HEADER_MODES)}",
                          "'stripped' sends only what the receiver cannot regenerate; 'full' sends whole files")
    return str(mode)


def quality_grid(codec: str) -> tuple[float, ...]:
    """The codec's quality parameter by index, lowest quality first (JPEG 2000: compression ratio)."""
    return _GRIDS[codec]


# --------------------------------------------------------------------------------------------------
# Pillow encode/decode of whole files
# --------------------------------------------------------------------------------------------------

def _encode_file(data: bytes, h: int, w: int, codec: str, qi: int) -> bytes:
    from PIL import Image

    im = Image.frombytes("RGB", (w, h), data)
    q = quality_grid(codec)[qi]
    buf = io.BytesIO()
    if codec == "jpeg":
        im.save(buf, format="JPEG", quality=int(q), subsampling=2, optimize=False, progressive=False)
    elif codec == "webp":
        im.save(buf, format="WEBP", quality=int(q), method=6)
    elif codec == "avif":
        im.save(buf, format="AVIF", quality=int(q), speed=8, subsampling="4:2:0", max_threads=1)
    elif codec == "jpeg2000":
        im.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[q], irreversible=True,
                mct=1, no_jp2=True)
    else:  # pragma: no cover - validated before
        raise ValueError(codec)
    return buf.getvalue()


def _decode_file(f: bytes, h: int, w: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(f)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (h, w, 3):
        raise ValueError(f"decoded image has shape {arr.shape}, expected {(h, w, 3)}")
    return arr


# --------------------------------------------------------------------------------------------------
# Header stripping: per codec, payload = strip(file); file = restore(payload) exactly
# --------------------------------------------------------------------------------------------------

class _Unstrippable(RuntimeError):
    """A file whose regenerable bytes differ from the receiver's template (a bug, reported loudly)."""


def _jpeg_header_end(f: bytes) -> int:
    if f[:2] != b"\xff\xd8":
        raise _Unstrippable("JPEG without SOI")
    i = 2
    while i + 4 <= len(f):
        if f[i] != 0xFF:
            raise _Unstrippable(f"JPEG marker expected at byte {i}")
        marker = f[i + 1]
        length = int.from_bytes(f[i + 2:i + 4], "big")
        i += 2 + length
        if marker == 0xDA:  # SOS: the scan follows
            return i
    raise _Unstrippable("JPEG without SOS")


def _j2k_parse(f: bytes) -> tuple[bytes, bytes, int]:
    """Split a raw J2K codestream: (main header without COM, SOT segment, offset of the tile data)."""
    if f[:2] != b"\xff\x4f":
        raise _Unstrippable("J2K codestream without SOC")
    i, main = 2, bytearray(b"\xff\x4f")
    while i + 4 <= len(f):
        marker = f[i:i + 2]
        if marker == b"\xff\x90":  # SOT
            sot = f[i:i + 12]
            if f[i + 12:i + 14] != b"\xff\x93":
                raise _Unstrippable("J2K SOT not followed by SOD")
            psot = int.from_bytes(sot[6:10], "big")
            if psot != len(f) - i - 2 or f[-2:] != b"\xff\xd9":
                raise _Unstrippable("J2K with more than one tile-part or trailing data")
            return bytes(main), bytes(sot), i + 14
        length = int.from_bytes(f[i + 2:i + 4], "big")
        if marker != b"\xff\x64":  # drop COM
            main += f[i:i + 2 + length]
        i += 2 + length
    raise _Unstrippable("J2K without SOT")


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISOBMFF boxes in ``data[start:end]``: (type, offset of the box, size)."""
    out, i = [], start
    while i + 8 <= end:
        size = int.from_bytes(data[i:i + 4], "big")
        if size < 8 or i + size > end:
            raise _Unstrippable("unsupported ISOBMFF box size")
        out.append((data[i + 4:i + 8], i, size))
        i += size
    if i != end:
        raise _Unstrippable("trailing bytes after ISOBMFF boxes")
    return out


def _avif_layout(f: bytes) -> tuple[int, int, int]:
    """(offset of the iloc extent-length field, its width in bytes, offset of the mdat box)."""
    boxes = _boxes(f, 0, len(f))
    types = [t for t, _, _ in boxes]
    if types != [b"ftyp", b"meta", b"mdat"]:
        raise _Unstrippable(f"AVIF top-level boxes {types}")
    _, meta_off, meta_size = boxes[1]
    iloc = [b for b in _boxes(f, meta_off + 12, meta_off + meta_size) if b[0] == b"iloc"]
    if len(iloc) != 1:
        raise _Unstrippable("AVIF without exactly one iloc")
    _, off, _ = iloc[0]
    version = f[off + 8]
    p = off + 12
    offset_size, length_size = f[p] >> 4, f[p] & 15
    base_offset_size, index_size = f[p + 1] >> 4, (f[p + 1] & 15 if version in (1, 2) else 0)
    p += 2
    count_w = 4 if version == 2 else 2
    item_count = int.from_bytes(f[p:p + count_w], "big")
    p += count_w
    if item_count != 1:
        raise _Unstrippable(f"AVIF with {item_count} items (alpha or grid not supported)")
    p += count_w  # item_ID
    if version in (1, 2):
        p += 2  # construction_method
    p += 2 + base_offset_size  # data_reference_index, base_offset
    extent_count = int.from_bytes(f[p:p + 2], "big")
    p += 2
    if extent_count != 1 or length_size == 0:
        raise _Unstrippable("AVIF item with other than one sized extent")
    p += index_size + offset_size
    return p, length_size, boxes[2][1]


def _obu_prefix_len(content: bytes) -> int:
    """Length of the leading temporal-delimiter and sequence-header OBUs of an AV1 sample."""
    i = 0
    while i < len(content):
        header = content[i]
        obu_type, has_ext, has_size = (header >> 3) & 15, (header >> 2) & 1, (header >> 1) & 1
        if obu_type not in (1, 2) or not has_size:
            break
        j = i + 1 + has_ext
        size, shift = 0, 0
        while True:
            byte = content[j]
            size |= (byte & 0x7F) << shift
            j += 1
            shift += 7
            if not byte & 0x80:
                break
        i = j + size
    return i


@lru_cache(maxsize=1024)
def _template(codec: str, qi: int, h: int, w: int) -> tuple:
    """What the receiver regenerates for (codec, quality index, size), from a mid-grey image."""
    f = _encode_file(bytes([128]) * (h * w * 3), h, w, codec, qi)
    if codec == "jpeg":
        return (f[:_jpeg_header_end(f)],)
    if codec == "jpeg2000":
        main, sot, _ = _j2k_parse(f)
        return main, sot
    if codec == "avif":
        len_off, len_w, mdat_off = _avif_layout(f)
        content = f[mdat_off + 8:]
        return f[:mdat_off + 8], len_off, len_w, mdat_off, content[:_obu_prefix_len(content)]
    return ()


def _restore(payload: bytes, codec: str, qi: int, h: int, w: int) -> bytes:
    """Rebuild the file the receiver decodes from a stripped payload."""
    t = _template(codec, qi, h, w)
    if codec == "jpeg":
        return t[0] + payload + b"\xff\xd9"
    if codec == "jpeg2000":
        main, sot = t
        sot = sot[:6] + struct.pack(">I", len(payload) + 14) + sot[10:]
        return main + sot + b"\xff\x93" + payload + b"\xff\xd9"
    if codec == "webp":
        if len(payload) < 3:
            raise ValueError("WebP payload shorter than the VP8 frame tag")
        chunk = payload[:3] + b"\x9d\x01\x2a" + struct.pack("<HH", w, h) + payload[3:]
        pad = b"\x00" * (len(chunk) & 1)
        return (b"RIFF" + struct.pack("<I", 4 + 8 + len(chunk) + len(pad)) + b"WEBPVP8 "
                + struct.pack("<I", len(chunk)) + chunk + pad)
    if codec == "avif":
        prefix, len_off, len_w, mdat_off, obus = t
        content_len = len(obus) + len(payload)
        head = bytearray(prefix)
        head[len_off:len_off + len_w] = content_len.to_bytes(len_w, "big")
        head[mdat_off:mdat_off + 4] = (content_len + 8).to_bytes(4, "big")
        return bytes(head) + obus + payload
    raise ValueError(codec)  # pragma: no cover


def _strip(f: bytes, codec: str, qi: int, h: int, w: int) -> bytes:
    """The bytes of file ``f`` that the receiver cannot regenerate; checked by a round trip."""
    if codec == "jpeg":
        payload, reference = f[_jpeg_header_end(f):-2], f
    elif codec == "jpeg2000":
        main, sot, data_off = _j2k_parse(f)
        payload, reference = f[data_off:-2], main + f[data_off - 14:]
    elif codec == "webp":
        chunk_len = int.from_bytes(f[16:20], "little")
        if f[:4] != b"RIFF" or f[8:16] != b"WEBPVP8 " or len(f) != 20 + chunk_len + (chunk_len & 1):
            raise _Unstrippable("WebP is not a single lossy VP8 chunk")
        chunk = f[20:20 + chunk_len]
        payload, reference = chunk[:3] + chunk[10:], f
    elif codec == "avif":
        _, _, _, mdat_off, obus = _template(codec, qi, h, w)
        _, _, f_mdat = _avif_layout(f)
        content = f[f_mdat + 8:]
        if not content.startswith(obus):
            raise _Unstrippable("AV1 sequence header differs from the receiver's")
        payload, reference = content[len(obus):], f
    else:  # pragma: no cover
        raise ValueError(codec)
    if _restore(payload, codec, qi, h, w) != reference:
        raise _Unstrippable(f"{codec} at quality index {qi}: header regeneration is not exact")
    return payload


# --------------------------------------------------------------------------------------------------
# Payload encode / decode (cached: a sweep codes the same image at many budgets)
# --------------------------------------------------------------------------------------------------

class _ByteLRU:
    """A least-recently-used cache of ``bytes`` values bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.size = max_bytes, 0
        self.data: OrderedDict[tuple, bytes] = OrderedDict()

    def get(self, key: tuple) -> bytes | None:
        v = self.data.get(key)
        if v is not None:
            self.data.move_to_end(key)
        return v

    def put(self, key: tuple, value: bytes) -> None:
        if key in self.data:
            return
        self.data[key] = value
        self.size += len(value)
        while self.size > self.max_bytes and len(self.data) > 1:
            _, old = self.data.popitem(last=False)
            self.size -= len(old)


#: Encoded payloads by (image digest, size, codec, quality index, headers): a sweep codes the same
#: image at many budgets, and bisections for nearby budgets share most of their encodes.
_PAYLOADS = _ByteLRU(64 << 20)
#: Decoded images by (payload digest, codec, quality index, size, headers).
_DECODED = _ByteLRU(64 << 20)


_UNSTRIPPABLE = b"\x00unstrippable"


def _payload_cached(data: bytes, digest: bytes, h: int, w: int, codec: str, qi: int, headers: str) -> bytes | None:
    """The payload, or None when the receiver could not regenerate this file's headers (then the
    quality index is treated as not fitting any budget, with a warning)."""
    key = (digest, h, w, codec, qi, headers)
    got = _PAYLOADS.get(key)
    if got is None:
        f = _encode_file(data, h, w, codec, qi)
        try:
            got = f if headers == "full" else _strip(f, codec, qi, h, w)
        except _Unstrippable as exc:
            warnings.warn(f"{codec}: {exc}; this quality is skipped (use headers='full' to send whole files)",
                          RuntimeWarning, stacklevel=3)
            got = _UNSTRIPPABLE
        _PAYLOADS.put(key, got)
    return None if got is _UNSTRIPPABLE else got


def _decode_cached(payload: bytes, codec: str, qi: int, h: int, w: int, headers: str) -> bytes:
    key = (hashlib.sha1(payload).digest(), len(payload), codec, qi, h, w, headers)
    got = _DECODED.get(key)
    if got is None:
        f = payload if headers == "full" else _restore(payload, codec, qi, h, w)
        got = _decode_file(f, h, w).tobytes()
        _DECODED.put(key, got)
    return got


def _as_u8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def encode_payload(image: np.ndarray, codec: str, quality_index: int, headers: str = "stripped") -> bytes:
    """Encode ``image`` ([H, W, 3] uint8) at ``quality_grid(codec)[quality_index]``.

    :returns: the bytes that are sent (the whole file with ``headers="full"``).
    """
    a = _as_u8(image)
    data = a.tobytes()
    got = _payload_cached(data, hashlib.sha1(data).digest(), a.shape[0], a.shape[1], codec,
                          int(quality_index), headers)
    if got is None:
        raise _Unstrippable(f"{codec} at quality index {quality_index}: headers cannot be regenerated")
    return got


def decode_payload(payload: bytes, codec: str, quality_index: int, size: tuple[int, int],
                   headers: str = "stripped") -> np.ndarray:
    """Inverse of :func:`encode_payload`: ``[H, W, 3]`` uint8 (read-only) for ``size = (H, W)``."""
    h, w = size
    raw = _decode_cached(bytes(payload), codec, int(quality_index), int(h), int(w), headers)
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def psnr_db(reference: np.ndarray, image: np.ndarray) -> float:
    """PSNR [dB] of two images of equal shape, both uint8 (peak 255) or both float in [0, 1]."""
    peak = 255.0 if np.asarray(reference).dtype == np.uint8 else 1.0
    mse = float(np.mean((np.asarray(reference, dtype=np.float64) - np.asarray(image, dtype=np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def rate_match(image: np.ndarray, codec: str, max_payload_bytes: int,
               headers: str = "stripped") -> tuple[int, bytes] | None:
    """The highest quality index whose payload fits ``max_payload_bytes``, by bisection.

    :param image: ``[H, W, 3]`` uint8.
    :returns: ``(quality_index, payload)`` with ``len(payload) <= max_payload_bytes``, or None when even
        the lowest quality does not fit. About ``log2(len(grid)) + 2`` encodes (cached).
    """
    a = _as_u8(image)
    data, h, w = a.tobytes(), a.shape[0], a.shape[1]
    digest = hashlib.sha1(data).digest()

    def fits(i: int) -> bool:
        p = _payload_cached(data, digest, h, w, codec, i, headers)
        return p is not None and len(p) <= max_payload_bytes

    lo, hi = 0, len(quality_grid(codec)) - 1
    if max_payload_bytes <= 0 or not fits(lo):
        return None
    if fits(hi):
        lo = hi
    while hi - lo > 1:  # invariant: lo fits, hi does not
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, _payload_cached(data, digest, h, w, codec, lo, headers)


# --------------------------------------------------------------------------------------------------
# Frames: side information + payload in a fixed bit budget
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameLayout:
    """The bit layout of one image's frame in a budget of ``budget_bits``.

    :param budget_bits: bits available for the frame (side information included).
    :param codecs: the codecs the sender may choose from (their id is sent when there are several).
    :param headers: ``"stripped"`` or ``"full"`` (see the module docstring).
    """

    budget_bits: int
    codecs: tuple[str, ...]
    headers: str = "stripped"

    @property
    def codec_bits(self) -> int:
        return math.ceil(math.log2(len(self.codecs))) if len(self.codecs) > 1 else 0

    @property
    def quality_bits(self) -> int:
        return QUALITY_BITS if self.headers == "stripped" else 0

    @property
    def length_bits(self) -> int:
        room = (self.budget_bits - self.codec_bits - self.quality_bits) // 8
        return max(room, 0).bit_length()

    @property
    def side_bits(self) -> int:
        """Bits of side information before the payload."""
        return self.codec_bits + self.quality_bits + self.length_bits

    @property
    def max_payload_bytes(self) -> int:
        return max((self.budget_bits - self.side_bits) // 8, 0)


@dataclass(frozen=True)
class SourceCoded:
    """One image through a source codec (what the receiver gets when no bit is in error).

    :param codec: the codec used, or None when nothing fitted the budget.
    :param quality_index: index into :func:`quality_grid` (-1 when nothing fitted).
    :param payload: the payload bytes sent.
    :param image: ``[H, W, 3]`` uint8 as decoded by the receiver (the fallback when nothing fitted).
    :param psnr_db: PSNR of ``image`` against the source [dB].
    :param frame_bits: side information + payload bits (the rest of the budget is padding).
    """

    codec: str | None
    quality_index: int
    payload: bytes
    image: np.ndarray
    psnr_db: float
    frame_bits: int

    @property
    def sent(self) -> bool:
        return self.codec is not None


def fallback_image(size: tuple[int, int]) -> np.ndarray:
    """``[H, W, 3]`` uint8 stand-in (128) for the image shown when nothing was received; the float
    payloads of :mod:`dekasim.codecs.digital` show exactly :data:`FALLBACK_VALUE`."""
    return np.full((*size, 3), round(FALLBACK_VALUE * 255), dtype=np.uint8)


def encode_within_budget(image: np.ndarray, layout: FrameLayout, reference: np.ndarray | None = None) -> SourceCoded:
    """The best of ``layout.codecs`` for ``image`` within the frame budget.

    :param image: ``[H, W, 3]`` uint8.
    :param layout: the frame (budget, candidate codecs, header mode).
    :param reference: image the PSNR is measured against (``[H, W, 3]`` float in [0, 1] or uint8);
        defaults to ``image``.
    :returns: the candidate with the highest PSNR; ``codec=None`` and the fallback image when none fits.
    """
    a = _as_u8(image)
    ref = a if reference is None else reference
    size = (a.shape[0], a.shape[1])
    best: SourceCoded | None = None
    for codec in layout.codecs:
        hit = rate_match(a, codec, layout.max_payload_bytes, layout.headers)
        if hit is None:
            continue
        qi, payload = hit
        dec = decode_payload(payload, codec, qi, size, layout.headers)
        p = psnr_db(ref, dec if np.asarray(ref).dtype == np.uint8 else dec / 255.0)
        if best is None or p > best.psnr_db:
            best = SourceCoded(codec, qi, payload, dec, p, layout.side_bits + 8 * len(payload))
    if best is None:
        fb = fallback_image(size)
        p = psnr_db(ref, fb if np.asarray(ref).dtype == np.uint8 else np.full(fb.shape, FALLBACK_VALUE))
        best = SourceCoded(None, -1, b"", fb, p, min(layout.side_bits, layout.budget_bits))
    return best


def pack_frame(coded: SourceCoded, layout: FrameLayout) -> np.ndarray:
    """The frame as ``[layout.budget_bits]`` uint8 bits (MSB first), zero-padded."""
    bits = np.zeros(layout.budget_bits, dtype=np.uint8)
    if not coded.sent:
        return bits  # length field 0: nothing sent
    fields = []
    if layout.codec_bits:
        fields.append((layout.codecs.index(coded.codec), layout.codec_bits))
    if layout.quality_bits:
        fields.append((coded.quality_index, layout.quality_bits))
    fields.append((len(coded.payload), layout.length_bits))
    pos = 0
    for value, width in fields:
        bits[pos:pos + width] = [(value >> (width - 1 - j)) & 1 for j in range(width)]
        pos += width
    payload_bits = np.unpackbits(np.frombuffer(coded.payload, dtype=np.uint8))
    bits[pos:pos + payload_bits.size] = payload_bits
    return bits


def unpack_frame(bits: np.ndarray, layout: FrameLayout) -> tuple[str, int, bytes] | None:
    """Inverse of :func:`pack_frame`: ``(codec, quality_index, payload)`` or None when nothing was sent."""
    bits = np.asarray(bits, dtype=np.uint8)
    if layout.max_payload_bytes <= 0 or bits.size < layout.budget_bits:
        return None
    pos = 0

    def take(width: int) -> int:
        nonlocal pos
        v = 0
        for b in bits[pos:pos + width]:
            v = (v << 1) | int(b)
        pos += width
        return v

    codec_id = take(layout.codec_bits) if layout.codec_bits else 0
    qi = take(layout.quality_bits) if layout.quality_bits else 0
    length = take(layout.length_bits)
    if length == 0 or length > layout.max_payload_bytes or codec_id >= len(layout.codecs):
        return None
    codec = layout.codecs[codec_id]
    if layout.quality_bits and qi >= len(quality_grid(codec)):
        return None
    payload = np.packbits(bits[pos:pos + 8 * length]).tobytes()
    return codec, qi, payload
