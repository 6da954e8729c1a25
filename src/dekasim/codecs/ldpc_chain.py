"""The 5G NR transport chain of the digital baselines: CRC + LDPC + scrambling + QAM, and back.

One transport block per item (:class:`LDPCQAMChain`), as in TS 38.212/38.211::

    payload bits [info_bits] -> CRC24A -> C code blocks (+ CRC24B each if C > 1)
    -> 5G LDPC (Sionna LDPC5GEncoder, rate-matched to E = Qm * floor(n / C) bits, bit-interleaved)
    -> concatenation -> TS 38.211 Gold-sequence scrambling (c_init = 2^15 + 1)
    -> Gray QAM (Sionna Mapper, unit average energy) -> + pseudo-random QPSK padding to n symbols

Receiver: APP demapping with the per-symbol post-equalisation noise variance ``no_eff`` (Sionna
LLRs, ln P(1)/P(0)), descrambling, flooding BP decoding (Sionna LDPC5GDecoder, ``boxplus-phi``,
``ldpc_iterations`` = 20 by default, no early stop), all items' code blocks in one batch. An item is
a *block error* when any of its code blocks decodes wrongly, judged against the bits sent by the
paired :meth:`encode` (a genie; the CRC24A that a real receiver would check is sent and paid for in
the budget, and misses an error with probability 2^-24). A block error shows the fallback (images:
mid-grey 0.5; latents: zeros). Bit errors count all information bits of the item's code blocks
(payload, padding and CRCs) after decoding.

The MCS and the code block layout come from :mod:`dekasim.codecs.mcs`; the codecs that use the chain
are in :mod:`dekasim.codecs.digital`, the knowledge pack's downlink in :mod:`dekasim.deka.downlink`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from dekasim.codecs import mcs
from dekasim.codecs.mcs import CodeBlockPlan

#: Default number of BP iterations of the LDPC decoder.
LDPC_ITERATIONS = 20
#: Smallest noise variance handed to the demapper (keeps LLRs finite for noiseless tests).
MIN_NO = 1e-9
#: PDSCH scrambling initialiser of TS 38.211 7.3.1.1 with n_RNTI = 1, q = 0, n_ID = 1.
_C_INIT = 1 * 2 ** 15 + 0 * 2 ** 14 + 1



@lru_cache(maxsize=256)
def _ldpc_decoder(k: int, n: int, qm: int, num_iter: int):
    from sionna.phy.fec.ldpc import LDPC5GDecoder

    return LDPC5GDecoder(mcs.ldpc_encoder(k, n, qm), num_iter=num_iter, hard_out=True, return_infobits=True)


@lru_cache(maxsize=8)
def _qam(qm: int):
    from sionna.phy.mapping import Demapper, Mapper

    return Mapper("qam", qm), Demapper("app", "qam", qm)


@lru_cache(maxsize=8)
def _crc(kind: str):
    from sionna.phy.fec.crc import CRCEncoder

    return CRCEncoder(kind)


@lru_cache(maxsize=64)
def _scrambling(length: int) -> torch.Tensor:
    from sionna.phy.nr.utils import generate_prng_seq

    return torch.as_tensor(generate_prng_seq(length, _C_INIT), dtype=torch.float32)


@lru_cache(maxsize=64)
def padding_symbols(count: int) -> torch.Tensor:
    """``[count]`` complex64 QPSK symbols (unit energy) from a fixed seed; they carry nothing."""
    g = torch.Generator().manual_seed(0x5EED)
    b = torch.randint(0, 2, (count, 2), generator=g).to(torch.float32)
    return torch.complex(1 - 2 * b[:, 0], 1 - 2 * b[:, 1]) / math.sqrt(2.0)


class LDPCQAMChain:
    """The 5G NR transport chain for one :class:`~dekasim.codecs.mcs.CodeBlockPlan` (see module doc).

    :param plan: MCS and code block layout per item.
    :param num_iter: BP iterations of the LDPC decoder.

    Example::

        plan = plan_codeblocks(mcs_entry(9), 1024)
        chain = LDPCQAMChain(plan)
        x, u = chain.encode(bits)            # bits [B, plan.info_bits] in {0, 1}
        u_hat = chain.decode(x, torch.full(x.shape, 1e-3))
        assert torch.equal(u_hat, u)
    """

    def __init__(self, plan: CodeBlockPlan, num_iter: int = LDPC_ITERATIONS) -> None:
        self.plan = plan
        self.num_iter = int(num_iter)
        qm = plan.mcs.modulation_order
        self.encoder = mcs.ldpc_encoder(plan.k, plan.n, qm)
        self.decoder = _ldpc_decoder(plan.k, plan.n, qm, self.num_iter)
        self.mapper, self.demapper = _qam(qm)
        self.tb_crc = _crc("CRC24A")
        self.cb_crc = _crc("CRC24B") if plan.num_codewords > 1 else None
        self.scrambling = _scrambling(plan.num_codewords * plan.n)
        self.padding = padding_symbols(plan.n_channel_uses - plan.used_symbols)

    def encode(self, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bits to symbols.

        :param bits: ``[B, plan.info_bits]`` float in {0, 1}.
        :returns: ``x`` ``[B, n_channel_uses]`` complex64 (E|x|^2 = 1 on average) on ``bits.device``, and
            ``u`` ``[B, C, k]`` float, the code blocks' information bits (genie reference for :meth:`decode`).
        """
        p, dev = self.plan, bits.device
        b = bits.shape[0]
        if bits.shape[1] != p.info_bits:
            raise ValueError(f"expected [B, {p.info_bits}] bits, got {tuple(bits.shape)}")
        work = torch.device(self.encoder.device)
        tb = self.tb_crc(bits.to(work, torch.float32))
        if self.cb_crc is not None:
            u = self.cb_crc(tb.reshape(b, p.num_codewords, p.k - mcs.CB_CRC_BITS))
        else:
            u = tb.reshape(b, 1, p.k)
        c = self.encoder(u.reshape(b * p.num_codewords, p.k)).reshape(b, p.num_codewords * p.n)
        c = torch.remainder(c + self.scrambling.to(work), 2.0)
        x = self.mapper(c).to(torch.complex64)
        if self.padding.numel():
            x = torch.cat([x, self.padding.to(work).expand(b, -1)], dim=1)
        return x.to(dev), u.to(dev)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor) -> torch.Tensor:
        """Symbols to decoded code block bits.

        :param y: ``[B, n_channel_uses]`` complex equalised symbols.
        :param no_eff: ``[B, n_channel_uses]`` (or broadcastable) float noise variance per symbol.
        :returns: ``[B, C, k]`` float hard decisions, on ``y.device``.
        """
        p, dev = self.plan, y.device
        b = y.shape[0]
        work = torch.device(self.encoder.device)
        used = p.used_symbols
        ys = y[:, :used].to(work, torch.complex64)
        no = torch.as_tensor(no_eff, dtype=torch.float32, device=work).expand(b, y.shape[1])[:, :used]
        llr = self.demapper(ys, no.clamp_min(MIN_NO))
        llr = llr * (1.0 - 2.0 * self.scrambling.to(work))
        u_hat = self.decoder(llr.reshape(b * p.num_codewords, p.n))
        return u_hat.reshape(b, p.num_codewords, p.k).to(dev)

    def payload_bits(self, u: torch.Tensor) -> torch.Tensor:
        """``[B, C, k]`` code block bits -> ``[B, info_bits]`` payload bits (CRCs removed)."""
        p = self.plan
        if p.num_codewords > 1:
            u = u[:, :, : p.k - mcs.CB_CRC_BITS]
        return u.reshape(u.shape[0], -1)[:, : p.info_bits]
