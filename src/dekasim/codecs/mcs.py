"""5G NR modulation and coding schemes for the digital baselines.

- The PDSCH MCS tables of TS 38.214: Table 5.1.3.1-1 (up to 64QAM, ``mcs_table = "qam64"``, default)
  and Table 5.1.3.1-2 (up to 256QAM, ``"qam256"``): index -> modulation order Qm, target code rate
  R x 1024, spectral efficiency Qm R [bit/symbol].
- :func:`plan_codeblocks`: how one item's ``n_channel_uses`` symbols carry an MCS: code block count,
  LDPC (k, n) per code block, CRCs, checked against the range Sionna's ``LDPC5GEncoder`` supports.
- :func:`downlink_channel_uses`: the channel uses that chain needs to send a byte stream (e.g. a
  knowledge pack) at one MCS, in transport blocks of :data:`DOWNLINK_BLOCK_CHANNEL_USES` symbols;
  :func:`downlink_blocks` lists those blocks' plans (what :mod:`dekasim.deka.downlink` simulates).
- :func:`required_snr_db` / :func:`select_mcs`: link adaptation from a table of the Es/N0 each MCS
  needs for a block error rate of 10 % over AWGN, simulated by this project's own chain
  (:class:`dekasim.codecs.ldpc_chain.LDPCQAMChain`) at the block length in use and shipped as
  ``data/mcs_required_snr.json`` with the command and seed that produced it; :mod:`dekasim.codecs.mcs_table`
  regenerates it.

**Code block plan** (a simplified TS 38.212 5.2.2 / TS 38.214 5.1.3.2, the same at both ends):
``G = n_channel_uses * Qm`` coded bits; ``C`` code blocks, the fewest for which every block's
``k = floor(R * E)`` fits the base graph Sionna picks (BG1: k <= 8448, BG2: k <= 3840), with
``E = Qm * floor(n_channel_uses / C)`` coded bits each (rate-matched, bit-interleaved per
TS 38.212 5.4.2.2); the ``n_channel_uses mod C`` symbols left over are padding. Each item's transport
block carries a CRC24A, each code block also a CRC24B when ``C > 1``; what is left is the source
budget :attr:`CodeBlockPlan.info_bits`. Sionna's encoder has no repetition coding, so code rates
below 1/5 (MCS 0-2 of table qam64, 0-1 of qam256) are rejected; rates above 0.95 do not occur.

**Adaptive MCS** (``mcs = "adaptive"``; the digital codecs' default is ``"best"``, calibrated per point, see
:mod:`dekasim.codecs.digital`): the highest supported index whose required Es/N0 plus
``mcs_margin_db`` is at most the transmitter's ``snr_db``; below every threshold, the lowest supported
index (the link still tries). The thresholds are for AWGN: over a frequency-selective or fading
channel a 10 % BLER needs more SNR, which is what ``mcs_margin_db`` (default 0 dB) is for, like an
outer-loop link adaptation offset. The transmitter only knows the average SNR, not the realisation.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from dekasim.errors import ConfigError

_log = logging.getLogger(__name__)

#: TS 38.214 Table 5.1.3.1-1 (PDSCH, up to 64QAM): I_MCS -> (Qm, R x 1024). 29-31 are reserved.
MCS_TABLE_QAM64: tuple[tuple[int, float], ...] = (
    (2, 120), (2, 157), (2, 193), (2, 251), (2, 308), (2, 379), (2, 449), (2, 526), (2, 602), (2, 679),
    (4, 340), (4, 378), (4, 434), (4, 490), (4, 553), (4, 616), (4, 658),
    (6, 438), (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719), (6, 772), (6, 822), (6, 873),
    (6, 910), (6, 948),
)
#: TS 38.214 Table 5.1.3.1-2 (PDSCH, up to 256QAM): I_MCS -> (Qm, R x 1024). 28-31 are reserved.
MCS_TABLE_QAM256: tuple[tuple[int, float], ...] = (
    (2, 120), (2, 193), (2, 308), (2, 449), (2, 602),
    (4, 378), (4, 434), (4, 490), (4, 553), (4, 616), (4, 658),
    (6, 466), (6, 517), (6, 567), (6, 616), (6, 666), (6, 719), (6, 772), (6, 822), (6, 873),
    (8, 682.5), (8, 711), (8, 754), (8, 797), (8, 841), (8, 885), (8, 916.5), (8, 948),
)
MCS_TABLES: dict[str, tuple[tuple[int, float], ...]] = {"qam64": MCS_TABLE_QAM64, "qam256": MCS_TABLE_QAM256}

#: CRC lengths of TS 38.212 5.1 (transport block CRC24A, code block CRC24B).
TB_CRC_BITS = 24
CB_CRC_BITS = 24
#: Sionna LDPC5GEncoder limits (sionna/phy/fec/ldpc/encoding.py): no repetition below 1/5, 0.95 max.
MIN_CODE_RATE, MAX_CODE_RATE = 1 / 5, 0.95
MIN_K, MAX_K_BG1, MAX_K_BG2 = 12, 8448, 3840
#: Target block error rate of the required-SNR table.
TARGET_BLER = 0.1
REQUIRED_SNR_FILE = "mcs_required_snr.json"


@dataclass(frozen=True)
class MCS:
    """One row of a TS 38.214 MCS table.

    :param index: I_MCS.
    :param table: ``"qam64"`` (Table 5.1.3.1-1) or ``"qam256"`` (Table 5.1.3.1-2).
    :param modulation_order: Qm, bits per QAM symbol (2, 4, 6, 8).
    :param rate_x1024: target code rate R x 1024 as printed in the standard.
    """

    index: int
    table: str
    modulation_order: int
    rate_x1024: float

    @property
    def code_rate(self) -> float:
        return self.rate_x1024 / 1024.0

    @property
    def spectral_efficiency(self) -> float:
        """Qm R [information bits per symbol], as in the table's last column (before rounding)."""
        return self.modulation_order * self.code_rate

    @property
    def key(self) -> str:
        """``"Qm:Rx1024"``, the key of the required-SNR table (the same pair in both tables)."""
        return f"{self.modulation_order}:{self.rate_x1024:g}"


def check_mcs_table(table: object) -> str:
    if table not in MCS_TABLES:
        raise ConfigError("mcs_table", table, f"one of {list(MCS_TABLES)}",
                          "'qam64' is TS 38.214 Table 5.1.3.1-1, 'qam256' Table 5.1.3.1-2")
    return str(table)


def mcs_entry(index: int, table: str = "qam64") -> MCS:
    """Row ``index`` of ``table``; ConfigError (field ``mcs``) for a reserved or unknown index."""
    rows = MCS_TABLES[check_mcs_table(table)]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(rows):
        raise ConfigError("mcs", index, f"'adaptive' or an MCS index in [0, {len(rows) - 1}] of table {table} "
                          f"(TS 38.214 Table 5.1.3.1-{1 if table == 'qam64' else 2}; higher indices are reserved)")
    qm, r = rows[index]
    return MCS(index, table, qm, r)


# --------------------------------------------------------------------------------------------------
# Code block plan
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodeBlockPlan:
    """How one item's channel uses carry one MCS.

    :param mcs: the MCS.
    :param n_channel_uses: symbols per item.
    :param num_codewords: C, LDPC code blocks per item.
    :param k: information bits per code block (CRCs included).
    :param n: coded bits per code block after rate matching (a multiple of Qm).
    """

    mcs: MCS
    n_channel_uses: int
    num_codewords: int
    k: int
    n: int

    @property
    def symbols_per_codeword(self) -> int:
        return self.n // self.mcs.modulation_order

    @property
    def used_symbols(self) -> int:
        """Data symbols; the remaining ``n_channel_uses - used_symbols`` are padding."""
        return self.num_codewords * self.symbols_per_codeword

    @property
    def crc_bits(self) -> int:
        return TB_CRC_BITS + (CB_CRC_BITS * self.num_codewords if self.num_codewords > 1 else 0)

    @property
    def info_bits(self) -> int:
        """Transport block size: payload bits per item (the source budget)."""
        return self.num_codewords * self.k - self.crc_bits

    @property
    def effective_rate(self) -> float:
        """Payload bits per coded bit actually sent (CRC and padding are overhead)."""
        return self.info_bits / (self.n_channel_uses * self.mcs.modulation_order)


def _base_graph(k: int, r: float) -> str:
    """TS 38.212 7.3.2 base graph choice, as Sionna's LDPC5GEncoder makes it."""
    if k <= 292 or (k <= 3824 and r <= 0.67) or r <= 0.25:
        return "bg2"
    return "bg1"


_LIFTING_SETS = ((2, 4, 8, 16, 32, 64, 128, 256), (3, 6, 12, 24, 48, 96, 192, 384), (5, 10, 20, 40, 80, 160, 320),
                 (7, 14, 28, 56, 112, 224), (9, 18, 36, 72, 144, 288), (11, 22, 44, 88, 176, 352),
                 (13, 26, 52, 104, 208), (15, 30, 60, 120, 240))


def mother_code_length(k: int, n: int) -> int:
    """Length of the circular buffer that rate matching reads (TS 38.212 5.4.2.1 with Sionna's choice
    of base graph and lifting size Z, TS 38.212 Table 5.3.2-1): ``N - 2Z - filler bits``. A codeword
    longer than this would need repetition, which Sionna's encoder does not do. The tests check this
    against ``LDPC5GEncoder.n_cb_comp``."""
    bg = _base_graph(k, k / n)
    if bg == "bg1":
        kb_sel, kb, cols = 22, 22, 68
    else:
        kb_sel = 10 if k > 640 else 9 if k > 560 else 8 if k > 192 else 6
        kb, cols = 10, 52
    z = min(s for group in _LIFTING_SETS for s in group if kb_sel * s >= k)
    return cols * z - 2 * z - (kb * z - k)


def _rate_ok(k: int, n: int) -> bool:
    if not (MIN_K <= k and n > 0 and MIN_CODE_RATE <= k / n <= MAX_CODE_RATE):
        return False
    bg = _base_graph(k, k / n)
    return k <= MAX_K_BG1 and k / n >= 1 / 3 if bg == "bg1" else k <= MAX_K_BG2


@lru_cache(maxsize=256)
def ldpc_encoder(k: int, n: int, modulation_order: int):
    """Sionna ``LDPC5GEncoder(k, n, num_bits_per_symbol)`` (cached; warnings about r > 948/1024 muted)."""
    from sionna.phy.fec.ldpc import LDPC5GEncoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return LDPC5GEncoder(k, n, num_bits_per_symbol=modulation_order, check_input=False)


def _unsupported(mcs: MCS, n_channel_uses: int, why: str) -> ConfigError:
    ok = supported_mcs_indices(n_channel_uses, mcs.table)
    allowed = f"[{ok[0]}, {ok[-1]}]" if ok else "none at this n_channel_uses"
    return ConfigError("mcs", mcs.index,
                       f"an MCS of table {mcs.table} that Sionna's LDPC5GEncoder supports at "
                       f"{n_channel_uses} channel uses per item (code rate in [1/5, 0.95], "
                       f"{MIN_K} <= k <= {MAX_K_BG1} per code block): indices {allowed}; "
                       f"MCS {mcs.index} (Qm={mcs.modulation_order}, R={mcs.rate_x1024:g}/1024="
                       f"{mcs.code_rate:.3f}) {why}",
                       "pick an index in that range or mcs = 'adaptive'")


def _plan(mcs: MCS, n_channel_uses: int) -> CodeBlockPlan | str:
    """The plan, or why there is none."""
    qm, r = mcs.modulation_order, mcs.code_rate
    if r < MIN_CODE_RATE:
        return "needs repetition coding (rate below 1/5), which Sionna's LDPC5GEncoder does not support"
    for c in range(1, n_channel_uses + 1):
        e = qm * (n_channel_uses // c)
        k = int(math.floor(r * e))
        if k < MIN_K:
            return f"leaves k={k} < {MIN_K} information bits per code block"
        if _rate_ok(k, e):
            plan = CodeBlockPlan(mcs, n_channel_uses, c, k, e)
            if plan.info_bits <= 0:
                return "leaves no payload bits after the CRCs"
            if e > mother_code_length(k, e):  # rate matching would need repetition of the circular buffer
                return f"needs a codeword (k={k}, n={e}) longer than the mother code"
            return plan
    return "has no code block segmentation within Sionna's limits"  # pragma: no cover


@lru_cache(maxsize=512)
def _plan_cached(mcs: MCS, n_channel_uses: int) -> CodeBlockPlan | str:
    return _plan(mcs, n_channel_uses)


def plan_codeblocks(mcs: MCS, n_channel_uses: int) -> CodeBlockPlan:
    """The code block plan of ``mcs`` at ``n_channel_uses`` symbols per item.

    :raises ConfigError: (field ``mcs``) when Sionna's LDPC encoder cannot realise the MCS there.
    """
    got = _plan_cached(mcs, int(n_channel_uses))
    if isinstance(got, str):
        raise _unsupported(mcs, n_channel_uses, got)
    return got


def plan_transport_block(mcs: MCS, info_bits: int) -> CodeBlockPlan:
    """The plan that carries exactly ``info_bits`` payload bits at ``mcs``: the block length of a BER/BLER study.

    The converse of :func:`plan_codeblocks` (there the channel uses are given and the payload follows; here the
    payload, a transport block size, is given and the channel uses follow, as TS 38.214 5.1.3.2 sizes a
    transport block for a code rate): ``C`` code blocks, the fewest for which ``k = (info_bits + CRCs) / C``
    fits the base graph Sionna picks; each rate-matched to ``E = Qm * ceil(k / (R * Qm))`` coded bits, so the
    realised rate ``k / E`` is the MCS's ``R`` rounded down to whole QAM symbols; ``n_channel_uses = C * E / Qm``
    (no padding symbols). CRCs as everywhere in the chain: CRC24A per transport block, CRC24B per code block
    when ``C > 1``.

    :param mcs: the MCS (its rate must be >= 1/5: Sionna's encoder has no repetition).
    :param info_bits: payload bits per transport block (>= 1). With ``C > 1`` code blocks, ``info_bits + CRCs``
        must split into ``C`` equal blocks (TS 38.214's TBS table guarantees this the same way).
    :raises ConfigError: field ``block_bits`` for a size that cannot be segmented, ``mcs`` for an MCS the
        encoder cannot realise.
    """
    if isinstance(info_bits, bool) or not isinstance(info_bits, int) or info_bits < 1:
        raise ConfigError("block_bits", info_bits, "a whole number of information bits per block >= 1")
    qm, r = mcs.modulation_order, mcs.code_rate
    if r < MIN_CODE_RATE:
        raise ConfigError("mcs", mcs.index, f"an MCS of table {mcs.table} with code rate >= 1/5 (Sionna's "
                          f"LDPC5GEncoder has no repetition coding); MCS {mcs.index} has R = {mcs.code_rate:.3f}",
                          f"pick an index >= {next(i for i, (_, x) in enumerate(MCS_TABLES[mcs.table]) if x / 1024 >= MIN_CODE_RATE)}")
    for c in range(1, info_bits + 2):
        crc = TB_CRC_BITS + (CB_CRC_BITS * c if c > 1 else 0)
        total = info_bits + crc
        k = -(-total // c)
        e = qm * math.ceil(k / (r * qm))
        if not _rate_ok(k, e) or e > mother_code_length(k, e):
            continue
        if total % c:
            lower, upper = c * (total // c) - crc, c * k - crc
            raise ConfigError("block_bits", info_bits,
                              f"a block length that splits into {c} equal LDPC code blocks at MCS {mcs.index} "
                              f"(info bits + {crc} CRC bits divisible by {c})",
                              f"use {lower} or {upper}")
        return CodeBlockPlan(mcs, c * e // qm, c, k, e)
    raise ConfigError("block_bits", info_bits, f"a block length MCS {mcs.index} can carry")  # pragma: no cover


@lru_cache(maxsize=64)
def supported_mcs_indices(n_channel_uses: int, table: str = "qam64") -> tuple[int, ...]:
    """MCS indices of ``table`` realisable at ``n_channel_uses`` symbols per item, ascending."""
    return tuple(i for i in range(len(MCS_TABLES[check_mcs_table(table)]))
                 if not isinstance(_plan_cached(mcs_entry(i, table), int(n_channel_uses)), str))


# --------------------------------------------------------------------------------------------------
# Downlink cost of a byte stream
# --------------------------------------------------------------------------------------------------

#: Transport block length [channel uses] in which :func:`downlink_channel_uses` sends a byte stream: the
#: longest block length of the shipped required-SNR table, so the BLER of each block is known per MCS.
DOWNLINK_BLOCK_CHANNEL_USES = 1024


def downlink_channel_uses(n_bytes: int, mcs_index: int, table: str = "qam64",
                          block_channel_uses: int = DOWNLINK_BLOCK_CHANNEL_USES) -> int:
    """Complex channel uses the digital chain needs to send ``n_bytes`` bytes at one MCS.

    The ``8 * n_bytes`` bits go as consecutive transport blocks of the digital chain
    (:class:`dekasim.codecs.ldpc_chain.LDPCQAMChain`: CRC24A, code blocks with CRC24B when there are
    several, 5G LDPC rate-matched to the MCS's code rate, Qm-bit QAM), each laid out by
    :func:`plan_codeblocks`: as many full blocks of ``block_channel_uses`` symbols as fill up, each
    carrying ``plan_codeblocks(mcs, block_channel_uses).info_bits`` payload bits, then one last block
    of the fewest symbols whose plan carries the bits left over.

    Counted: every QAM symbol of those blocks, i.e. payload, CRC and LDPC parity bits, plus the padding
    symbols a plan leaves (``n mod C``). Not counted: pilots (DMRS), cyclic prefixes, control
    signalling (the MCS is signalled out of band, as in the chain), retransmissions after a block
    error, and any framing beyond the CRCs.

    :param n_bytes: bytes to send (>= 0).
    :param mcs_index: I_MCS of ``table`` (TS 38.214 Table 5.1.3.1-1 for ``"qam64"``, -2 for ``"qam256"``).
    :param block_channel_uses: symbols per full transport block.
    :return: channel uses (complex symbols); 0 for 0 bytes.
    :raises ConfigError: for a negative ``n_bytes`` (field ``n_bytes``), or an MCS the chain cannot
        realise in blocks of ``block_channel_uses`` symbols (field ``mcs``, e.g. code rates below 1/5).
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 0:
        raise ConfigError("n_bytes", n_bytes, "a whole number of bytes >= 0")
    full, n_full, last = _downlink_layout(8 * n_bytes, mcs_index, table, block_channel_uses)
    return n_full * full.n_channel_uses + (last.n_channel_uses if last is not None else 0)


def downlink_blocks(n_bits: int, mcs_index: int, table: str = "qam64",
                    block_channel_uses: int = DOWNLINK_BLOCK_CHANNEL_USES) -> list[CodeBlockPlan]:
    """The transport blocks, in order, in which :func:`downlink_channel_uses` sends ``n_bits`` bits.

    Full blocks of ``block_channel_uses`` symbols (``plan_codeblocks(mcs, block_channel_uses)``, each
    carrying its ``info_bits``), then, if bits are left over, one last block: the shortest plan that
    carries them (its unused payload bits are padding). ``sum(p.n_channel_uses for p in blocks)`` is
    the channel-use count of :func:`downlink_channel_uses` for ``n_bits = 8 * n_bytes``.

    :param n_bits: payload bits (>= 0); ``[]`` for 0.
    :raises ConfigError: as :func:`downlink_channel_uses` (field ``n_bits`` for a negative count).
    """
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or n_bits < 0:
        raise ConfigError("n_bits", n_bits, "a whole number of bits >= 0")
    full, n_full, last = _downlink_layout(n_bits, mcs_index, table, block_channel_uses)
    return [full] * n_full + ([last] if last is not None else [])


def _downlink_layout(n_bits: int, mcs_index: int, table: str,
                     block_channel_uses: int) -> tuple[CodeBlockPlan, int, CodeBlockPlan | None]:
    """(full block plan, number of full blocks, last block plan or None) for ``n_bits`` payload bits."""
    mcs = mcs_entry(mcs_index, table)
    full = plan_codeblocks(mcs, int(block_channel_uses))
    n_full, rest = divmod(n_bits, full.info_bits)
    last = plan_codeblocks(mcs, _shortest_block(mcs, rest, int(block_channel_uses))) if rest else None
    return full, n_full, last


def _shortest_block(mcs: MCS, bits: int, longest: int) -> int:
    """Fewest channel uses, at most ``longest``, whose code block plan carries ``bits`` payload bits.

    No plan of ``n`` symbols carries more than ``Qm R n - 24`` payload bits (``C k <= Qm R n``, less the
    CRC24A), so the search starts there.
    """
    start = max(1, math.floor((bits + TB_CRC_BITS) / mcs.spectral_efficiency))
    for n in range(start, longest + 1):
        plan = _plan_cached(mcs, n)
        if not isinstance(plan, str) and plan.info_bits >= bits:
            return n
    return longest  # pragma: no cover  (the caller's full block carries them)


# --------------------------------------------------------------------------------------------------
# Required SNR table and adaptive selection
# --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def load_required_snr(path: str | None = None) -> dict[str, Any]:
    """The shipped (or given) required-SNR table, parsed."""
    if path is None:
        text = resources.files("dekasim.codecs").joinpath("data", REQUIRED_SNR_FILE).read_text()
    else:
        text = Path(path).read_text()
    return json.loads(text)


_warned: set[tuple] = set()


def required_snr_db(mcs: MCS, n_channel_uses: int, table_path: str | None = None) -> float:
    """Es/N0 [dB] at which ``mcs`` reaches a 10 % block error rate over AWGN at ``n_channel_uses``.

    Exact for the simulated block lengths of the table; between two of them, linear in
    log2(n_channel_uses); outside their range, the nearest one (with a warning naming the command
    that simulates the missing length).
    """
    data = load_required_snr(table_path)
    rows = {int(n): v for n, v in data["entries"].items() if mcs.key in v}
    if not rows:
        raise ConfigError("mcs", mcs.index, f"an MCS listed in the required-SNR table (no entry for {mcs.key})",
                          "regenerate the table: python -m dekasim.codecs.mcs_table --help")
    ns = sorted(rows)
    n = int(n_channel_uses)
    if n in rows:
        return float(rows[n][mcs.key]["required_snr_db"])
    if n < ns[0] or n > ns[-1]:
        near = ns[0] if n < ns[0] else ns[-1]
        if (n, near) not in _warned:
            _warned.add((n, near))
            warnings.warn(f"required-SNR table simulated for n_channel_uses in {ns}; using n={near} for "
                          f"n={n}. Simulate it with: python -m dekasim.codecs.mcs_table --n-channel-uses {n} --out FILE",
                          stacklevel=2)
        return float(rows[near][mcs.key]["required_snr_db"])
    hi = next(m for m in ns if m > n)
    lo = max(m for m in ns if m < n)
    t = (math.log2(n) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
    a, b = rows[lo][mcs.key]["required_snr_db"], rows[hi][mcs.key]["required_snr_db"]
    return float(a + t * (b - a))


def select_mcs(snr_db: float, n_channel_uses: int, table: str = "qam64", margin_db: float = 0.0,
               table_path: str | None = None) -> MCS:
    """Adaptive MCS: the highest supported index with ``required_snr_db + margin_db <= snr_db``.

    Non-decreasing in ``snr_db`` by construction. Below every threshold: the lowest supported index.
    """
    ok = supported_mcs_indices(n_channel_uses, table)
    if not ok:
        raise ConfigError("bandwidth_ratio", n_channel_uses,
                          f"enough channel uses per item for at least one MCS of table {table}")
    chosen = ok[0]
    for i in ok:
        if required_snr_db(mcs_entry(i, table), n_channel_uses, table_path) + margin_db <= snr_db:
            chosen = i
    return mcs_entry(chosen, table)


if __name__ == "__main__":  # the table tool moved to dekasim.codecs.mcs_table; the old command still works
    import runpy

    runpy.run_module("dekasim.codecs.mcs_table", run_name="__main__", alter_sys=True)
