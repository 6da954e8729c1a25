"""Digital baselines: real source codecs + 5G LDPC + QAM, and the capacity bound.

Registered codecs:

- ``"digital"`` (kind ``"digital"``): images through JPEG / WebP / JPEG 2000 / AVIF
  (:mod:`dekasim.codecs.source_coding`), then the 5G NR chain below, at an MCS of TS 38.214
  (:mod:`dekasim.codecs.mcs`): by default the one of highest mean PSNR on calibration draws at each point
  (``mcs = "best"``, see "Link adaptation" below), or fixed, or from AWGN thresholds.
- ``"ideal"`` (kind ``"bound"``): the same source codecs at the budget channel capacity allows,
  delivered without error.
- ``"digital_latent"`` (kind ``"digital"``): any float tensor through uniform scalar quantisation and
  lossless stdlib compression, then the same chain.

**The chain** is :class:`~dekasim.codecs.ldpc_chain.LDPCQAMChain` (CRC, 5G LDPC, scrambling, QAM;
APP demapping and BP decoding with the per-symbol ``no_eff``). An item is a *block error* when any of
its code blocks decodes wrongly, judged against the bits sent by the paired :meth:`encode` (a genie; the
CRC24A that a real receiver would check is sent and paid for in the budget, and misses an error with
probability 2^-24). A block error shows the fallback (images: mid-grey 0.5; latents: zeros). Bit errors
count all information bits of the item's code blocks (payload, padding and CRCs) after decoding.

The MCS is signalled out of band (like the DCI of a PDSCH), so its bits are not charged.

**Link adaptation** (option ``mcs``; the same for ``"digital"`` and ``"digital_latent"``):

- ``"best"`` (**default**): at each sweep point the simulator sends ``monte_carlo.calibration_images`` items
  at each candidate MCS over channel and noise draws independent of the reported ones (the same draws for
  every candidate), and reports the candidate of highest mean PSNR (:func:`dekasim.sim.runner.run_point`).
  The candidates (:meth:`_LinkCodec.variants`, :meth:`_LinkCodec.more_variants`): the AWGN-adaptive index,
  indices 3 and 6 below it and the lowest supported one (the four of ``"best"`` in dekasim 0.1.0), then on
  down in steps of 3 until two in a row score below the best of that ladder (``mcs_candidates`` caps the
  count; 4 gives the old four). Over fading the four alone often stopped while the PSNR was still rising
  and chose an MCS at 30-50 % BLER.

  Why this default: a baseline is a fair reference only when it is as strong as an engineer would make
  it for the channel at hand. Thresholds simulated over AWGN are too aggressive over fading and
  estimated channels (TDL-A 100 ns at 30 m/s, LMMSE, 20 dB: MCS 28 and BLER 1.0); a BLER target (10 %)
  is the criterion of a link with HARQ, while here a block error loses the whole item; outer-loop link
  adaptation needs many transmissions and state across batches, where a point sends a few dozen items.
  Choosing on the metric itself adapts to the profile, delay spread, speed, receiver and payload with
  no fading table; it is a per-point genie choice among the candidates, so it flatters the digital
  chain, never the codecs it is compared with. It costs ``calibration_images`` extra items per
  candidate (4 or more candidates) per point. Outside the simulator (a codec built and called
  directly) there are no calibration draws and ``"best"`` sends the ``"adaptive"`` MCS.
- ``"adaptive"`` (the default in dekasim 0.1.0): the highest MCS whose Es/N0 for 10 % BLER over AWGN
  (:func:`dekasim.codecs.mcs.select_mcs`) plus ``mcs_margin_db`` is at most the point's ``snr_db``.
- an integer: that MCS index at every point.
"""

from __future__ import annotations

import lzma
import math
import zlib
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from dekasim.codecs import mcs as mcs_mod
from dekasim.codecs import source_coding as sc
from dekasim.codecs.base import Codec, Decoded, LinkCounts, register_codec
from dekasim.codecs.ldpc_chain import LDPC_ITERATIONS, MIN_NO, LDPCQAMChain, padding_symbols
from dekasim.codecs.mcs import MCS
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

#: ``options_help`` of the link options both digital codecs share.
LINK_OPTIONS_HELP = {
    "mcs": "\"best\" (default): per point, the MCS of highest mean PSNR on calibration draws "
           "(monte_carlo.calibration_images items per candidate; candidates from the AWGN choice down in steps of "
           "3 until the PSNR has passed its peak, and the lowest; outside dekasim run it acts as \"adaptive\"); "
           "\"adaptive\": the highest MCS whose AWGN Es/N0 for 10 % BLER + mcs_margin_db <= snr_db (the default "
           "in dekasim 0.1.0); or an MCS index of mcs_table",
    "mcs_margin_db": "dB added to every AWGN threshold of mcs = \"adaptive\" (the candidates of \"best\" start at "
                     "margin 0), -10 .. 40, default 0",
    "mcs_table": "\"qam64\" (TS 38.214 Table 5.1.3.1-1, default) or \"qam256\" (Table 5.1.3.1-2)",
    "ldpc_iterations": "belief-propagation iterations of the LDPC decoder, 1 .. 200 (default 20)",
    "mcs_candidates": "mcs = \"best\": try at most this many MCS (2 .. 29; 4: the candidates of \"best\" before issue "
                      "20); default no cap: the search goes down in steps of 3 until the PSNR has passed its peak",
}


def _check_number(field: str, value: Any, lo: float, hi: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ConfigError(field, value, f"a number of {unit} within [{lo:g}, {hi:g}]")
    return float(value)


def _check_int(field: str, value: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(field, value, f"an integer {what} in [{lo}, {hi}]")
    return int(value)


class _LinkCodec(Codec):
    """Shared MCS handling and LDPC/QAM link of the digital codecs."""

    kind = "digital"

    def _init_link(self, mcs: Any, mcs_margin_db: Any, mcs_table: Any, ldpc_iterations: Any,
                   mcs_candidates: Any = None) -> None:
        self.mcs_table = mcs_mod.check_mcs_table(mcs_table)
        self.mcs_margin_db = _check_number("mcs_margin_db", mcs_margin_db, -10.0, 40.0, "dB")
        self.ldpc_iterations = _check_int("ldpc_iterations", ldpc_iterations, 1, 200, "of BP iterations")
        self.mcs_candidates = None if mcs_candidates is None else \
            _check_int("mcs_candidates", mcs_candidates, 2, 29, "cap on the candidates of mcs = 'best' (4: as in "
                       "dekasim 0.1.0; leave it out for no cap)")
        n = self.n_channel_uses
        self.best_mcs = mcs == "best"
        if mcs in ("adaptive", "best"):
            self.fixed_mcs: MCS | None = None
            if not mcs_mod.supported_mcs_indices(n, self.mcs_table):
                raise ConfigError("bandwidth_ratio", self.bandwidth_ratio,
                                  f"enough channel uses per item ({n} now) for one MCS of table {self.mcs_table}",
                                  "raise the bandwidth ratio or send larger items")
        else:
            if isinstance(mcs, str) and mcs.strip().isdigit():
                mcs = int(mcs)
            if not isinstance(mcs, int) or isinstance(mcs, bool):
                raise ConfigError("mcs", mcs, "'adaptive', 'best' or an integer MCS index "
                                  "(TS 38.214 Table 5.1.3.1-1/-2)")
            self.fixed_mcs = mcs_mod.mcs_entry(mcs, self.mcs_table)
            mcs_mod.plan_codeblocks(self.fixed_mcs, n)  # raises ConfigError naming 'mcs' if unsupported
        self._tx: dict[str, Any] | None = None

    def choose_mcs(self, cond: Condition) -> MCS:
        """The MCS for a batch sent at ``cond`` (the transmitter's knowledge)."""
        if self.fixed_mcs is not None:
            return self.fixed_mcs
        return mcs_mod.select_mcs(cond.snr_db, self.n_channel_uses, self.mcs_table, self.mcs_margin_db)

    #: The first candidates of ``mcs = "best"``: the AWGN-adaptive index and indices ``BEST_MCS_STEP`` apart
    #: below it, ``BEST_MCS_CANDIDATES`` in all with the lowest supported index (all of them in dekasim 0.1.0).
    BEST_MCS_CANDIDATES = 4
    BEST_MCS_STEP = 3
    #: The search down the ladder stops after this many consecutive ladder candidates below the ladder's best.
    BEST_MCS_PATIENCE = 2

    def _ladder(self, cond: Condition) -> tuple[list[int], int]:
        """(indices ``BEST_MCS_STEP`` apart from the AWGN-adaptive MCS (margin 0) down, the lowest supported)."""
        supported = mcs_mod.supported_mcs_indices(self.n_channel_uses, self.mcs_table)
        top = mcs_mod.select_mcs(cond.snr_db, self.n_channel_uses, self.mcs_table, 0.0).index
        return [i for i in range(top, supported[0] - 1, -self.BEST_MCS_STEP) if i in supported], supported[0]

    def variants(self, cond: Condition) -> list[dict[str, Any]]:
        """Option overrides the simulator tries first at ``cond`` when ``mcs = "best"`` (else none).

        The AWGN-adaptive MCS (margin 0), indices ``BEST_MCS_STEP`` apart below it and the lowest supported
        index, ``BEST_MCS_CANDIDATES`` in all: fading and estimation errors only ever push the best choice
        down. :meth:`more_variants` goes on down from there while the PSNR still rises. The runner picks the
        candidate with the highest mean PSNR on calibration draws independent of the reported ones (see
        :func:`dekasim.sim.runner.run_point`)."""
        if not self.best_mcs:
            return []
        ladder, lowest = self._ladder(cond)
        k = min(self.BEST_MCS_CANDIDATES, self.mcs_candidates or self.BEST_MCS_CANDIDATES)
        picks = ladder[:k]
        if lowest not in picks:  # the most robust MCS is always a candidate
            picks = picks[: k - 1] + [lowest]
        return [{"mcs": i} for i in picks]

    def more_variants(self, cond: Condition, tried: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
        """The next candidate of ``mcs = "best"`` after ``tried`` (``[(overrides, mean PSNR [dB])]``), or none.

        The search walks on down the ladder of :meth:`variants` (steps of ``BEST_MCS_STEP``) until the
        last ``BEST_MCS_PATIENCE`` ladder candidates tried score below the best ladder candidate (the
        PSNR has passed its peak), the ladder ends, or ``mcs_candidates`` candidates were tried. Equal
        scores (every block lost at each) go on down. The candidates of :meth:`variants` are always
        tried first, so the search only ever adds candidates: it picks another MCS than the four-candidate
        choice only where one of them scores strictly higher on the calibration draws."""
        if not self.best_mcs or (self.mcs_candidates is not None and len(tried) >= self.mcs_candidates):
            return []
        ladder, _ = self._ladder(cond)
        scores = {int(o["mcs"]): s for o, s in tried}
        done = [i for i in ladder if i in scores]
        nxt = next((i for i in ladder if i not in scores), None)
        if nxt is None or not done:
            return []
        peak = max(scores[i] for i in done)
        tail = done[-self.BEST_MCS_PATIENCE:]
        if len(tail) == self.BEST_MCS_PATIENCE and all(scores[i] < peak for i in tail):
            return []
        return [{"mcs": nxt}]

    def chain_for(self, mcs: MCS) -> LDPCQAMChain:
        return _chain(mcs.index, mcs.table, self.n_channel_uses, self.ldpc_iterations)

    def _link_info(self, chain: LDPCQAMChain) -> dict[str, Any]:
        p = chain.plan
        info = {"mcs_index": p.mcs.index, "mcs_table": p.mcs.table, "modulation_order": p.mcs.modulation_order,
                "code_rate": p.mcs.code_rate, "num_codewords": p.num_codewords, "codeword_k": p.k,
                "codeword_n": p.n, "info_bits_per_item": p.info_bits, "ldpc_iterations": chain.num_iter}
        if self.fixed_mcs is None:
            info["mcs_required_snr_db"] = mcs_mod.required_snr_db(p.mcs, self.n_channel_uses)
            info["mcs_margin_db"] = self.mcs_margin_db
        return info

    def _tx_state(self, y: torch.Tensor) -> dict[str, Any]:
        if self._tx is None or self._tx["batch"] != y.shape[0]:
            raise RuntimeError(f"{type(self).__name__}.decode needs the genie bits of a matching encode() batch")
        if y.shape[1] != self.n_channel_uses:
            raise ValueError(f"expected y of shape [B, {self.n_channel_uses}], got {tuple(y.shape)}")
        return self._tx

    def _receive(self, y: torch.Tensor, no_eff: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor,
                                                                          LinkCounts]:
        """Decode the link: (tx state, payload bits [B, info_bits] (cpu), block ok [B] (cpu), counts)."""
        tx = self._tx_state(y)
        chain: LDPCQAMChain = tx["chain"]
        u_hat = chain.decode(y, no_eff).cpu()
        u = tx["u"]
        bit_err = (u_hat != u).reshape(u.shape[0], -1).sum(dim=1)
        ok = bit_err == 0
        # one item = one transport block over its own slots: the independent unit of the bit errors
        counts = LinkCounts.per_unit(bit_err, u[0].numel(), unit="transport block")
        return tx, chain.payload_bits(u_hat), ok, counts


@lru_cache(maxsize=64)
def _chain(index: int, table: str, n_channel_uses: int, num_iter: int) -> LDPCQAMChain:
    return LDPCQAMChain(mcs_mod.plan_codeblocks(mcs_mod.mcs_entry(index, table), n_channel_uses), num_iter)


def _images_u8(payload: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``[B, 3, H, W]`` float in [0, 1] -> (``[B, H, W, 3]`` uint8, ``[B, H, W, 3]`` float64 reference)."""
    ref = payload.detach().to(torch.float64).clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()
    return np.rint(ref * 255.0).astype(np.uint8), ref


def _to_payload(images: list[np.ndarray | None], shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``[H, W, 3]`` uint8 images (None: not received -> :data:`~source_coding.FALLBACK_VALUE`)
    -> ``[B, 3, H, W]`` in [0, 1] with ``like``'s dtype and device."""
    arr = np.full((len(images), shape[1], shape[2], 3), sc.FALLBACK_VALUE, dtype=np.float32)
    for i, im in enumerate(images):
        if im is not None:
            arr[i] = im.astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(device=like.device, dtype=like.dtype)


def _source_info(coded: list[sc.SourceCoded]) -> dict[str, list]:
    """Per-image facts of the source coding step, as ``Decoded.info`` lists."""
    return {
        "source_codec": [c.codec or "none" for c in coded],
        "source_quality": [sc.quality_grid(c.codec)[c.quality_index] if c.sent else None for c in coded],
        "source_bytes": [len(c.payload) for c in coded],
        "frame_bits": [c.frame_bits for c in coded],
        "source_psnr_db": [c.psnr_db for c in coded],
        "image_sent": [c.sent for c in coded],
    }


def _check_image_shape(payload_shape: tuple[int, ...]) -> None:
    if len(payload_shape) != 3 or payload_shape[0] != 3 or min(payload_shape[1:]) < 8:
        raise ConfigError("payload_shape", tuple(payload_shape), "an RGB image shape [3, H, W] with H, W >= 8",
                          "use codec 'digital_latent' for other tensors")


def _source_codecs(source_codec: Any) -> tuple[str, ...]:
    name = sc.check_source_codec(source_codec)
    return sc.available_source_codecs() if name == "best" else (name,)


@register_codec("digital")
class DigitalImageCodec(_LinkCodec):
    """Image codec + 5G LDPC + QAM at a TS 38.214 MCS (the separation-based digital baseline).

    Per point, the MCS is the calibrated ``"best"`` (default), fixed (``mcs = <index>``) or chosen from
    ``cond.snr_db`` (``"adaptive"``, see :func:`dekasim.codecs.mcs.select_mcs`); see "Link adaptation" in
    the module docstring. Its transport block size is each image's bit budget:
    ``info_bits = C * k - CRCs`` with ``C * k ~= n_channel_uses * Qm * R``. Each image is rate-matched
    into that budget by its source codec (``"best"``: the codec with the highest PSNR for that image),
    framed (:class:`~dekasim.codecs.source_coding.FrameLayout`), zero-padded and sent through
    :class:`LDPCQAMChain`. An image whose code blocks all decode is source-decoded; otherwise, or when
    nothing fitted the budget, the receiver shows mid-grey (exactly 0.5).

    :param payload_shape: ``(3, H, W)``, images in [0, 1] (quantised to 8 bits before coding).
    :param bandwidth_ratio: complex channel uses per real sample; ``n = round(ratio * 3 H W)``.
    :param source_codec: ``"best"`` (default), ``"jpeg"``, ``"webp"``, ``"jpeg2000"`` or ``"avif"``.
    :param mcs: ``"best"`` (default): the simulator tries the candidates of :meth:`variants` and
        :meth:`more_variants` on calibration draws at each point and reports the one with the highest mean
        PSNR (a per-point genie choice; called directly, ``"best"`` acts as ``"adaptive"``); ``"adaptive"``
        (AWGN thresholds, the default in dekasim 0.1.0); or an MCS index of ``mcs_table``.
    :param mcs_candidates: ``mcs = "best"`` tries at most this many MCS (2 .. 29; 4: the candidates of
        ``"best"`` in dekasim 0.1.0); default no cap.
    :param mcs_margin_db: added to every required SNR of the adaptive choice [dB] (default 0: AWGN
        thresholds; a few dB keep BLER near 10 % on fading channels).
    :param mcs_table: ``"qam64"`` (TS 38.214 Table 5.1.3.1-1, default) or ``"qam256"`` (Table 5.1.3.1-2).
    :param headers: ``"stripped"`` (default) or ``"full"``; see :mod:`dekasim.codecs.source_coding`.
    :param ldpc_iterations: BP iterations (default 20).

    ``Decoded.info``: ``mcs_index``, ``mcs_table``, ``modulation_order``, ``code_rate``,
    ``num_codewords``, ``codeword_k``, ``codeword_n``, ``info_bits_per_item``, ``ldpc_iterations``
    (+ ``mcs_required_snr_db`` and ``mcs_margin_db`` when adaptive), per batch, and, per image, ``source_codec`` (``"none"`` when nothing fitted), ``source_quality``
    (the codec's quality parameter), ``source_bytes`` (payload bytes), ``frame_bits`` (side
    information + payload), ``source_psnr_db`` (PSNR if received), ``image_sent``, ``block_error``.
    """

    kind = "digital"
    payload_kinds = ("image",)
    options_help = {
        "source_codec": "\"best\" (default: per image the codec of highest PSNR within the bit budget), \"jpeg\", "
                        "\"webp\", \"jpeg2000\" or \"avif\"",
        **LINK_OPTIONS_HELP,
        "headers": "\"stripped\" (default: only what the receiver cannot rebuild is sent and charged) or \"full\" "
                   "(the codec's whole container)",
    }

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, source_codec: str = "best",
                 mcs: int | str = "best", mcs_margin_db: float = 0.0, mcs_table: str = "qam64",
                 headers: str = "stripped", ldpc_iterations: int = LDPC_ITERATIONS,
                 mcs_candidates: int | None = None) -> None:
        extra = {} if mcs_candidates is None else {"mcs_candidates": mcs_candidates}
        super().__init__(payload_shape, bandwidth_ratio, source_codec=source_codec, mcs=mcs,
                         mcs_margin_db=mcs_margin_db, mcs_table=mcs_table, headers=headers,
                         ldpc_iterations=ldpc_iterations, **extra)
        _check_image_shape(self.payload_shape)
        self.codecs = _source_codecs(source_codec)
        self.headers = sc.check_headers(headers)
        self._init_link(mcs, mcs_margin_db, mcs_table, ldpc_iterations, mcs_candidates)

    def encode(self, payload: torch.Tensor, cond: Condition) -> torch.Tensor:
        self.check_payload(payload)
        chain = self.chain_for(self.choose_mcs(cond))
        layout = sc.FrameLayout(chain.plan.info_bits, self.codecs, self.headers)
        images, ref = _images_u8(payload)
        coded = [sc.encode_within_budget(im, layout, reference=r) for im, r in zip(images, ref)]
        bits = torch.from_numpy(np.stack([sc.pack_frame(c, layout) for c in coded]).astype(np.float32))
        x, u = chain.encode(bits)
        self._tx = {"batch": payload.shape[0], "chain": chain, "layout": layout, "coded": coded,
                    "u": u.cpu(), "like": payload}
        return x.to(payload.device)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition) -> Decoded:
        tx, bits, ok, counts = self._receive(y, no_eff)
        layout: sc.FrameLayout = tx["layout"]
        size = tuple(self.payload_shape[1:])
        out: list[np.ndarray | None] = []
        for i in range(bits.shape[0]):
            img = None
            if ok[i]:
                frame = sc.unpack_frame(bits[i].numpy().astype(np.uint8), layout)
                if frame is not None:
                    img = sc.decode_payload(frame[2], frame[0], frame[1], size, layout.headers)
            out.append(img)
        coded: list[sc.SourceCoded] = tx["coded"]
        info = self._link_info(tx["chain"])
        info.update(_source_info(coded))
        info.update({
            "block_error": [not bool(v) for v in ok],
            "image_received": [im is not None for im in out],
        })
        return Decoded(payload=_to_payload(out, self.payload_shape, tx["like"]), counts=counts, info=info)


@register_codec("ideal")
class IdealCodec(Codec):
    """The source codecs at the capacity of the realised channel, delivered without error (a bound).

    **Budget convention.** Item ``b`` may use ``floor(sum_i log2(1 + 1 / no_eff[b, i]))`` bits: the
    capacity of its own ``n`` symbols at their realised post-equalisation SNR ``1/no_eff`` (a genie
    that knows the channel realisation, at infinite block length). Over AWGN this is
    ``n * log2(1 + SNR)``. Over fading channels it is *not* the ergodic capacity
    ``n * E[log2(1 + |h|^2 SNR)]``, which no code reaches within one short block, but the per-block
    capacity of the realisation the item saw, so a deep fade lowers that item's budget. With
    estimated CSI, ``no_eff`` includes the estimation error, so the bound is for the receiver's
    actual (mismatched) post-equalisation SNR.

    Because the budget depends on the realisation, the source coding happens in :meth:`decode`
    (from the images kept by the paired :meth:`encode`); :meth:`encode` emits ``n`` unit-energy
    QPSK symbols from a fixed seed, which only let the link produce ``no_eff``. The frame side
    information (codec id, quality index, length) is charged as in ``"digital"``; no CRC.

    :param source_codec: ``"best"`` (default), ``"jpeg"``, ``"webp"``, ``"jpeg2000"`` or ``"avif"``.
    :param headers: ``"stripped"`` (default) or ``"full"``.

    ``Decoded.counts`` has no errors by construction (``bits`` = the capacity bits, ``exact``: rows give no interval);
    ``Decoded.info``: per image ``capacity_bits``, ``source_codec``, ``source_quality``,
    ``source_bytes``, ``frame_bits``, ``source_psnr_db``, ``image_sent``.
    """

    kind = "bound"
    payload_kinds = ("image",)
    options_help = {
        "source_codec": DigitalImageCodec.options_help["source_codec"],
        "headers": DigitalImageCodec.options_help["headers"],
    }

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, source_codec: str = "best",
                 headers: str = "stripped") -> None:
        super().__init__(payload_shape, bandwidth_ratio, source_codec=source_codec, headers=headers)
        _check_image_shape(self.payload_shape)
        self.codecs = _source_codecs(source_codec)
        self.headers = sc.check_headers(headers)
        self._tx: dict[str, Any] | None = None

    def encode(self, payload: torch.Tensor, cond: Condition) -> torch.Tensor:
        self.check_payload(payload)
        self._tx = {"batch": payload.shape[0], "images": _images_u8(payload), "like": payload}
        x = padding_symbols(self.n_channel_uses).to(payload.device)
        return x.expand(payload.shape[0], -1).clone()

    def capacity_bits(self, no_eff: torch.Tensor) -> list[int]:
        """Per-item budget ``floor(sum log2(1 + 1/no_eff))`` from ``[B, n]`` noise variances."""
        snr = 1.0 / no_eff.detach().to(torch.float64).clamp_min(MIN_NO)
        return [int(math.floor(v)) for v in torch.log2(1.0 + snr).sum(dim=1).cpu().tolist()]

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition) -> Decoded:
        if self._tx is None or self._tx["batch"] != y.shape[0]:
            raise RuntimeError("IdealCodec.decode needs the images of a matching encode() batch")
        no = torch.as_tensor(no_eff).expand(y.shape[0], y.shape[1])
        budgets = self.capacity_bits(no)
        images, ref = self._tx["images"]
        coded = [sc.encode_within_budget(im, sc.FrameLayout(bud, self.codecs, self.headers), reference=r)
                 for im, r, bud in zip(images, ref, budgets)]
        info = {"capacity_bits": budgets, **_source_info(coded)}
        counts = LinkCounts.per_unit([0] * len(coded), budgets, unit="image", exact=True)
        images_out = [c.image if c.sent else None for c in coded]
        return Decoded(payload=_to_payload(images_out, self.payload_shape, self._tx["like"]), counts=counts,
                       info=info)


# --------------------------------------------------------------------------------------------------
# Latents
# --------------------------------------------------------------------------------------------------

ENTROPY_CODERS = ("zlib", "lzma", "none")
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9}]
_MAX_BITS_PER_SAMPLE = 16


def _compress(data: bytes, coder: str) -> bytes:
    if coder == "zlib":
        c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no zlib header or checksum
        return c.compress(data) + c.flush()
    if coder == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    return data


def _decompress(data: bytes, coder: str) -> bytes:
    if coder == "zlib":
        return zlib.decompress(data, -15)
    if coder == "lzma":
        return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    return data


def _pack_indices(idx: np.ndarray, b: int) -> bytes:
    """``[N]`` integers < 2^b -> N*b bits, MSB first, packed into bytes."""
    bits = np.unpackbits(idx.astype(">u2").view(np.uint8).reshape(-1, 2), axis=1)[:, 16 - b:]
    return np.packbits(bits.reshape(-1)).tobytes()


def _unpack_indices(data: bytes, b: int, count: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * b].reshape(count, b)
    full = np.zeros((count, 16), dtype=np.uint8)
    full[:, 16 - b:] = bits
    return np.packbits(full, axis=1).view(">u2").reshape(-1).astype(np.int64)


def _bits_of(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - j)) & 1 for j in range(width)]


@register_codec("digital_latent")
class DigitalLatentCodec(_LinkCodec):
    """Any float tensor through scalar quantisation + lossless compression + 5G LDPC + QAM.

    Per item: ``lo = min``, ``hi = max`` (sent as two float32, 64 bits), ``b``-bit uniform quantisation
    ``q = round((v - lo) / (hi - lo) * (2^b - 1))``, the indices packed MSB first and compressed
    (``entropy_coder``: raw DEFLATE level 9, raw LZMA2 preset 9, or none). Frame::

        [b - 1: 4 bits, only when bits_per_sample = "adaptive"][lo: 32][hi: 32][length: L bits][bytes]

    then the chain of :class:`DigitalImageCodec`. ``"adaptive"`` picks, by bisection, the largest
    ``b`` in [1, 16] whose frame fits the MCS's transport block. If nothing fits, or on a block error,
    the receiver outputs zeros.

    :param bits_per_sample: ``"adaptive"`` (default) or an integer in [1, 16].
    :param entropy_coder: ``"zlib"`` (default), ``"lzma"`` or ``"none"``.
    :param mcs, mcs_margin_db, mcs_table, ldpc_iterations, mcs_candidates: as for :class:`DigitalImageCodec`
        (``mcs`` default ``"best"``: the candidate of highest mean PSNR of the decoded images at each point).

    ``Decoded.info``: the MCS fields of ``"digital"`` and, per item, ``bits_per_sample`` (0 when not
    sent), ``source_bytes``, ``frame_bits``, ``item_sent``, ``block_error``.
    """

    kind = "digital"
    payload_kinds = ("latent",)
    options_help = {
        "bits_per_sample": "\"adaptive\" (default: the most bits per value whose compressed frame fits the transport "
                           "block) or an integer 1 .. 16",
        "entropy_coder": "\"zlib\" (default: raw DEFLATE level 9), \"lzma\" (raw LZMA2 preset 9) or \"none\"",
        **LINK_OPTIONS_HELP,
    }

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, bits_per_sample: int | str = "adaptive",
                 entropy_coder: str = "zlib", mcs: int | str = "best", mcs_margin_db: float = 0.0,
                 mcs_table: str = "qam64", ldpc_iterations: int = LDPC_ITERATIONS,
                 mcs_candidates: int | None = None) -> None:
        extra = {} if mcs_candidates is None else {"mcs_candidates": mcs_candidates}
        super().__init__(payload_shape, bandwidth_ratio, bits_per_sample=bits_per_sample,
                         entropy_coder=entropy_coder, mcs=mcs, mcs_margin_db=mcs_margin_db,
                         mcs_table=mcs_table, ldpc_iterations=ldpc_iterations, **extra)
        if bits_per_sample != "adaptive":
            _check_int("bits_per_sample", bits_per_sample, 1, _MAX_BITS_PER_SAMPLE, "'adaptive' or bits per sample")
        self.bits_per_sample = bits_per_sample
        if entropy_coder not in ENTROPY_CODERS:
            raise ConfigError("entropy_coder", entropy_coder, f"one of {list(ENTROPY_CODERS)}")
        self.entropy_coder = entropy_coder
        self._init_link(mcs, mcs_margin_db, mcs_table, ldpc_iterations, mcs_candidates)

    def _side_bits(self, budget: int) -> tuple[int, int]:
        """(header bits before the length field, length field bits) for a ``budget``-bit frame."""
        head = (4 if self.bits_per_sample == "adaptive" else 0) + 64
        return head, max((budget - head) // 8, 0).bit_length()

    def _quantise(self, v: np.ndarray, b: int) -> tuple[float, float, bytes]:
        lo, hi = np.float32(v.min()), np.float32(v.max())
        span = float(hi) - float(lo)
        levels = 2 ** b - 1
        idx = np.zeros(v.size, dtype=np.int64) if span <= 0 else \
            np.clip(np.rint((v.astype(np.float64) - float(lo)) / span * levels), 0, levels).astype(np.int64)
        return float(lo), float(hi), _compress(_pack_indices(idx, b), self.entropy_coder)

    def _frame(self, v: np.ndarray, budget: int) -> tuple[np.ndarray, int, int]:
        """(frame bits [budget], bits per sample (0: nothing sent), payload bytes)."""
        head, lbits = self._side_bits(budget)
        room = max((budget - head - lbits) // 8, 0)
        frame = np.zeros(budget, dtype=np.uint8)

        def attempt(b: int) -> tuple[float, float, bytes] | None:
            q = self._quantise(v, b)
            return q if 0 < len(q[2]) <= room else None

        if self.bits_per_sample == "adaptive":
            lo_b, hi_b, best = 0, _MAX_BITS_PER_SAMPLE + 1, None  # invariant: lo_b fits (0 = nothing), hi_b not
            while hi_b - lo_b > 1:
                mid = (lo_b + hi_b) // 2
                got = attempt(mid)
                if got is not None:
                    lo_b, best = mid, got
                else:
                    hi_b = mid
            b = lo_b
        else:
            b = int(self.bits_per_sample)
            best = attempt(b)
            b = b if best is not None else 0
        if best is None:
            return frame, 0, 0
        lo, hi, data = best
        fields: list[int] = _bits_of(b - 1, 4) if self.bits_per_sample == "adaptive" else []
        fields += list(np.unpackbits(np.frombuffer(np.array([lo, hi], dtype=">f4").tobytes(), dtype=np.uint8)))
        fields += _bits_of(len(data), lbits)
        body = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        frame[: len(fields)] = fields
        frame[len(fields): len(fields) + body.size] = body
        return frame, b, len(data)

    def _unframe(self, bits: np.ndarray, budget: int) -> np.ndarray | None:
        head, lbits = self._side_bits(budget)
        if budget < head + lbits:
            return None
        pos = 0

        def take(width: int) -> int:
            nonlocal pos
            v = 0
            for x in bits[pos:pos + width]:
                v = (v << 1) | int(x)
            pos += width
            return v

        b = take(4) + 1 if self.bits_per_sample == "adaptive" else int(self.bits_per_sample)
        lo, hi = np.frombuffer(np.packbits(bits[pos:pos + 64]).tobytes(), dtype=">f4").astype(np.float64)
        pos += 64
        length = take(lbits)
        if length == 0 or pos + 8 * length > budget:
            return None
        data = np.packbits(bits[pos:pos + 8 * length]).tobytes()
        count = self.n_source_samples
        idx = _unpack_indices(_decompress(data, self.entropy_coder), b, count)
        span = hi - lo
        return lo + (idx / (2 ** b - 1)) * span if span > 0 else np.full(count, lo)

    def encode(self, payload: torch.Tensor, cond: Condition) -> torch.Tensor:
        self.check_payload(payload)
        chain = self.chain_for(self.choose_mcs(cond))
        budget = chain.plan.info_bits
        flat = payload.detach().reshape(payload.shape[0], -1).to(torch.float64).cpu().numpy()
        frames = [self._frame(v, budget) for v in flat]
        bits = torch.from_numpy(np.stack([f[0] for f in frames]).astype(np.float32))
        x, u = chain.encode(bits)
        self._tx = {"batch": payload.shape[0], "chain": chain, "frames": frames, "u": u.cpu(), "like": payload}
        return x.to(payload.device)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition) -> Decoded:
        tx, bits, ok, counts = self._receive(y, no_eff)
        budget = tx["chain"].plan.info_bits
        like: torch.Tensor = tx["like"]
        out = np.zeros((bits.shape[0], self.n_source_samples), dtype=np.float64)
        for i in range(bits.shape[0]):
            if ok[i]:
                v = self._unframe(bits[i].numpy().astype(np.uint8), budget)
                if v is not None:
                    out[i] = v
        frames = tx["frames"]
        info = self._link_info(tx["chain"])
        info.update({
            "bits_per_sample": [f[1] for f in frames],
            "source_bytes": [f[2] for f in frames],
            "frame_bits": [(self._side_bits(budget)[0] + self._side_bits(budget)[1] + 8 * f[2]) if f[1] else 0
                           for f in frames],
            "item_sent": [f[1] > 0 for f in frames],
            "block_error": [not bool(v) for v in ok],
        })
        payload = torch.from_numpy(out).reshape(bits.shape[0], *self.payload_shape).to(like.device, like.dtype)
        return Decoded(payload=payload, counts=counts, info=info)
