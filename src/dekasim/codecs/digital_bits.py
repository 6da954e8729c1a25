"""Random information bits through the 5G chain at one fixed MCS: the codec of BER/BLER waterfalls.

``[payload] kind = "bits"`` sends blocks of ``block_bits`` random information bits; ``"digital_bits"`` carries
each block as one transport block of :class:`~dekasim.codecs.ldpc_chain.LDPCQAMChain` (CRC24A, 5G LDPC
rate-matched to the MCS's code rate, TS 38.211 scrambling, Gray QAM; APP demapping with the per-symbol
``no_eff``, BP decoding) laid out by :func:`~dekasim.codecs.mcs.plan_transport_block`: the block length is
exact and the channel uses follow from it and the MCS (not from a bandwidth ratio).

Counting, as Sionna's ``sim_ber`` counts what its ``mc_fun`` returns: bit errors over the ``block_bits``
information bits of each block (the CRC is overhead, not information); a block error when any of them
decodes wrongly, judged against the bits sent (a genie; the CRC24A a real receiver checks is sent and paid
for). Eb/N0 is per information bit: ``Es/N0 + 10 log10(overhead * n_channel_uses / block_bits)``
(:func:`dekasim.channels.snr.ebno_db`; overhead = pilots and cyclic prefix, 1 over AWGN).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from dekasim.codecs import mcs as mcs_mod
from dekasim.codecs.base import Codec, Decoded, LinkCounts, register_codec
from dekasim.codecs.ldpc_chain import LDPC_ITERATIONS, LDPCQAMChain
from dekasim.conditions import Condition
from dekasim.errors import ConfigError


@lru_cache(maxsize=64)
def _chain(index: int, table: str, info_bits: int, num_iter: int) -> LDPCQAMChain:
    return LDPCQAMChain(mcs_mod.plan_transport_block(mcs_mod.mcs_entry(index, table), info_bits), num_iter)


def check_fixed_mcs(mcs: Any, table: str) -> int:
    """``mcs`` as one MCS index of ``table``, else the error that says a bit-error curve needs one fixed MCS."""
    if isinstance(mcs, str) and mcs.strip().isdigit():
        mcs = int(mcs)
    if mcs is None or isinstance(mcs, bool) or not isinstance(mcs, int):
        raise ConfigError("mcs", mcs, f"an MCS index of table {table} (TS 38.214 Table 5.1.3.1-"
                          f"{1 if table == 'qam64' else 2}): a BER/BLER curve is drawn at one fixed MCS",
                          "write options = { mcs = 9 }, or mcs = [4, 9, 16] for one curve per MCS")
    return mcs_mod.mcs_entry(mcs, table).index


@register_codec("digital_bits")
class DigitalBitsCodec(Codec):
    """Random information bits through 5G LDPC + QAM at one fixed MCS (BER/BLER waterfalls, kind = "bits").

    :param payload_shape: one block; ``prod(payload_shape)`` information bits (``(block_bits,)`` in a scenario).
    :param bandwidth_ratio: not used: the MCS and the block length set the channel uses
        (:func:`~dekasim.codecs.mcs.plan_transport_block`).
    :param mcs: the MCS index of ``mcs_table`` (required; a scenario may list several, one curve each).
    :param mcs_table: ``"qam64"`` (TS 38.214 Table 5.1.3.1-1, default) or ``"qam256"`` (Table 5.1.3.1-2).
    :param ldpc_iterations: BP iterations (default 20, no early stop).

    :input payload: ``[B, *payload_shape]`` float in {0, 1}.
    :output x: ``[B, n_channel_uses]`` complex64 QAM symbols, unit average energy.
    :output Decoded.payload: ``[B, *payload_shape]`` hard decisions in {0, 1}; ``counts`` over the information
        bits; ``info``: ``mcs_index``, ``mcs_table``, ``modulation_order``, ``code_rate`` (the table's R),
        ``realised_code_rate`` (k / E), ``num_codewords``, ``codeword_k``, ``codeword_n``, ``block_bits``,
        ``ldpc_iterations``, and per block ``block_error``.

    Example::

        codec = DigitalBitsCodec((1024,), 1.0, mcs=9)     # QPSK, R = 679/1024: 791 channel uses
        x = codec.encode(torch.randint(0, 2, (8, 1024)).float(), Condition(snr_db=3.0, tdl_profile="awgn"))
    """

    kind = "digital"
    payload_kinds = ("bits",)

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, mcs: int | None = None,
                 mcs_table: str = "qam64", ldpc_iterations: int = LDPC_ITERATIONS) -> None:
        table = mcs_mod.check_mcs_table(mcs_table)
        index = check_fixed_mcs(mcs, table)
        if isinstance(ldpc_iterations, bool) or not isinstance(ldpc_iterations, int) or not 1 <= ldpc_iterations <= 200:
            raise ConfigError("ldpc_iterations", ldpc_iterations, "an integer number of BP iterations in [1, 200]")
        block_bits = math.prod(int(s) for s in payload_shape)
        try:
            self.plan = mcs_mod.plan_transport_block(mcs_mod.mcs_entry(index, table), block_bits)
        except ConfigError as err:
            field = "payload.block_bits" if err.field == "block_bits" else err.field
            raise ConfigError(field, err.value, err.expected, err.fix) from None
        super().__init__(payload_shape, bandwidth_ratio, mcs=index, mcs_table=table, ldpc_iterations=ldpc_iterations)
        self.mcs = self.plan.mcs
        self.ldpc_iterations = ldpc_iterations
        #: information bits per item: what Eb is counted per (see the module doc)
        self.info_bits_per_item = block_bits
        self._tx: dict[str, Any] | None = None

    @property
    def n_channel_uses(self) -> int:
        """Complex symbols per block: ``C * E / Qm`` of :attr:`plan` (no padding)."""
        return self.plan.n_channel_uses

    def _chain(self) -> LDPCQAMChain:
        return _chain(self.mcs.index, self.mcs.table, self.info_bits_per_item, self.ldpc_iterations)

    def encode(self, payload: torch.Tensor, cond: Condition) -> torch.Tensor:
        self.check_payload(payload)
        bits = payload.detach().reshape(payload.shape[0], -1).to(torch.float32)
        if not bool(((bits == 0) | (bits == 1)).all()):
            raise ConfigError("payload", "non-binary values", "bits in {0, 1}", 'use [payload] kind = "bits"')
        x, _ = self._chain().encode(bits)
        self._tx = {"bits": bits.cpu()}
        return x.to(payload.device)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition) -> Decoded:
        if self._tx is None or self._tx["bits"].shape[0] != y.shape[0]:
            raise RuntimeError("DigitalBitsCodec.decode needs the bits of a matching encode() batch (the genie)")
        if y.shape[1] != self.n_channel_uses:
            raise ValueError(f"expected y of shape [B, {self.n_channel_uses}], got {tuple(y.shape)}")
        chain = self._chain()
        bits = self._tx["bits"]
        bits_hat = chain.payload_bits(chain.decode(y, no_eff)).cpu()
        errors = (bits_hat != bits).sum(dim=1)
        counts = LinkCounts(bit_errors=int(errors.sum()), bits=int(bits.numel()),
                            block_errors=int((errors > 0).sum()), blocks=int(bits.shape[0]))
        p = self.plan
        info = {"mcs_index": p.mcs.index, "mcs_table": p.mcs.table, "modulation_order": p.mcs.modulation_order,
                "code_rate": p.mcs.code_rate, "realised_code_rate": p.k / p.n,
                "num_codewords": p.num_codewords, "codeword_k": p.k, "codeword_n": p.n,
                "block_bits": self.info_bits_per_item, "ldpc_iterations": self.ldpc_iterations,
                "block_error": [bool(e) for e in (errors > 0)]}
        payload = bits_hat.reshape(bits.shape[0], *self.payload_shape).to(y.device)
        return Decoded(payload=payload, counts=counts, info=info)
