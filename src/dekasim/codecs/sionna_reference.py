"""The chain of ``digital_bits`` rebuilt from Sionna's own blocks, for cross-checks with Sionna's ``sim_ber``.

:func:`sionna_reference` returns an ``mc_fun(batch_size, ebno_db) -> (b, b_hat)`` for
``sionna.phy.utils.sim_ber``: ``BinarySource`` -> ``CRCEncoder("CRC24A")`` -> ``LDPC5GEncoder(k, n, Qm)`` ->
``TB5GScrambler(n_rnti=1, n_id=1, "PDSCH")`` -> ``Mapper("qam", Qm)`` -> ``AWGN`` at
``ebnodb2no(ebno_db, Qm, block_bits / n)`` -> ``Demapper("app")`` -> ``Descrambler`` ->
``LDPC5GDecoder(boxplus-phi, num_iter, hard_out)`` -> the first ``block_bits`` decoded bits. The code (k, n)
is the one :func:`~dekasim.codecs.mcs.plan_transport_block` lays out for ``digital_bits``, so both simulate
the same LDPC code, QAM and Eb/N0; they share no code of dekasim's chain, link, source or counting.
``sim_ber`` counts bit errors over every element of ``b`` and a block error per row with any error: what
``digital_bits`` counts per transport block.

Used by ``tests/integration/test_bits_payload.py`` and ``benchmarks/ber_vs_sim_ber.py``.
"""

from __future__ import annotations

from typing import Callable

import torch

from dekasim.codecs.ldpc_chain import LDPC_ITERATIONS
from dekasim.codecs.mcs import CodeBlockPlan, mcs_entry, plan_transport_block
from dekasim.errors import ConfigError


def sionna_reference(mcs_index: int, block_bits: int, mcs_table: str = "qam64",
                     num_iter: int = LDPC_ITERATIONS) -> tuple[Callable[[int, float], tuple[torch.Tensor, torch.Tensor]],
                                                             CodeBlockPlan]:
    """``(mc_fun, plan)``: the Sionna-only chain of ``digital_bits`` at one MCS over AWGN (see the module doc).

    :param mcs_index: MCS index of ``mcs_table``.
    :param block_bits: information bits per block; the plan must have one code block (``block_bits`` up to
        about 3800 at low rates, 8400 at high ones).
    :return: ``mc_fun(batch_size, ebno_db)`` giving ``b`` and ``b_hat``, both ``[batch_size, block_bits]`` float
        in {0, 1}, ``ebno_db`` in dB per information bit; and the code block plan.
    """
    from sionna.phy.channel import AWGN
    from sionna.phy.fec.crc import CRCEncoder
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.fec.scrambling import Descrambler, TB5GScrambler
    from sionna.phy.mapping import BinarySource, Demapper, Mapper
    from sionna.phy.utils import ebnodb2no

    plan = plan_transport_block(mcs_entry(mcs_index, mcs_table), block_bits)
    if plan.num_codewords != 1:
        raise ConfigError("block_bits", block_bits, "a block that fits one LDPC code block (the reference has no "
                          f"code block segmentation); MCS {mcs_index} needs {plan.num_codewords}",
                          "use a shorter block")
    qm = plan.mcs.modulation_order
    source, crc = BinarySource(), CRCEncoder("CRC24A")
    encoder = LDPC5GEncoder(plan.k, plan.n, num_bits_per_symbol=qm)
    decoder = LDPC5GDecoder(encoder, num_iter=num_iter, hard_out=True, return_infobits=True)
    scrambler = TB5GScrambler(n_rnti=1, n_id=1, channel_type="PDSCH")
    descrambler = Descrambler(scrambler, binary=False)
    mapper, demapper, awgn = Mapper("qam", qm), Demapper("app", "qam", qm), AWGN()
    rate = block_bits / plan.n  # information bits per coded bit: Eb counts information bits only

    def mc_fun(batch_size: int, ebno_db: float) -> tuple[torch.Tensor, torch.Tensor]:
        no = ebnodb2no(ebno_db, qm, rate)
        b = source([batch_size, block_bits])
        x = mapper(scrambler(encoder(crc(b))))
        y = awgn(x, no)
        u_hat = decoder(descrambler(demapper(y, no)))
        return b, u_hat[..., :block_bits]

    return mc_fun, plan
