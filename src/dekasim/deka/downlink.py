"""The knowledge pack's downlink, simulated: its bytes through the digital chain with ARQ, and the
broadcast-versus-unicast cost of sending it to U users.

- :func:`pack_bytes`: a saved pack as one byte stream (``manifest.json``, then its files in manifest
  order), the bytes :func:`dekasim.generative.pack.pack_size_bytes` counts.
- :func:`simulate_downlink`: those bytes in the transport blocks of
  :func:`dekasim.codecs.mcs.downlink_blocks` (the layout :func:`~dekasim.codecs.mcs.downlink_channel_uses`
  prices), each block through :class:`~dekasim.codecs.digital.LDPCQAMChain` and the scenario's link
  (``link(x, cond) -> (y, no_eff)``), decoded with the per-symbol ``no_eff``; blocks whose bits differ
  from those sent (a genie standing for the CRC24A the block carries and pays for) are sent again, over
  fresh channel and noise draws, until every block is received or ``max_rounds`` rounds have passed
  (ARQ without soft combining, no feedback delay or cost).
- :func:`broadcast_vs_unicast` / :func:`broadcast_sweep`: first-round channel uses (no ARQ) of one
  broadcast at the worst user's MCS against one unicast per user at its own MCS (link adaptation of
  :func:`dekasim.codecs.mcs.select_mcs`: BLER <= 10 % over AWGN at the transport block length).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dekasim.codecs import mcs
from dekasim.codecs.ldpc_chain import LDPC_ITERATIONS, LDPCQAMChain
from dekasim.conditions import Condition
from dekasim.errors import ConfigError
from dekasim.generative.pack import MANIFEST_NAME, pack_size_bytes
from dekasim.metrics import mean_ci95


def pack_bytes(directory: str | Path) -> bytes:
    """The pack in ``directory`` as one byte stream: ``manifest.json``, then each file the manifest
    lists, in its order; ``len(pack_bytes(d)) == pack_size_bytes(d)``.

    :raises ConfigError: for a directory that is not a complete pack (see ``pack_size_bytes``).
    """
    d = Path(directory)
    size = pack_size_bytes(d)  # validates the manifest and that every listed file exists
    manifest = (d / MANIFEST_NAME).read_bytes()
    out = manifest + b"".join((d / f["name"]).read_bytes() for f in json.loads(manifest)["files"])
    assert len(out) == size, (len(out), size)
    return out


@dataclass
class DownlinkResult:
    """What :func:`simulate_downlink` did. Channel uses are complex data symbols (pilots, CP and the
    link's slot padding not counted, as in :func:`~dekasim.codecs.mcs.downlink_channel_uses`)."""

    mcs_index: int
    n_bytes: int
    n_blocks: int
    transmissions: int              #: block sends, retransmissions included
    rounds: int                     #: ARQ rounds run (0 for no data)
    channel_uses: int               #: all symbols sent, retransmissions included
    channel_uses_first_round: int   #: = downlink_channel_uses(n_bytes, mcs_index, ...)
    residual_block_errors: int      #: blocks still wrong after the last round
    first_round_bler: float
    delivered: bool                 #: the received bytes equal the sent ones
    sha256_sent: str
    sha256_received: str
    runtime_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blocks(n_bits: int, mcs_index: Any, table: str, block_channel_uses: int) -> list[mcs.CodeBlockPlan]:
    try:
        return mcs.downlink_blocks(n_bits, mcs_index, table, block_channel_uses)
    except ConfigError as e:
        if e.field != "mcs":
            raise
        raise ConfigError("mcs_index", mcs_index, e.expected, e.fix) from None


def simulate_downlink(data: bytes, mcs_index: int, cond: Condition, link: Any, *, seed: int,
                      block_channel_uses: int = mcs.DOWNLINK_BLOCK_CHANNEL_USES, max_rounds: int = 50,
                      table: str = "qam64", batch_blocks: int = 64,
                      ldpc_iterations: int = LDPC_ITERATIONS) -> DownlinkResult:
    """Send ``data`` at MCS ``mcs_index`` over ``link`` at ``cond`` with ARQ; see the module doc.

    Bits go MSB first; a block carries ``plan.info_bits`` payload bits (the last one zero-padded).
    Every batch row is one block, ``x`` ``[b, plan.n_channel_uses]`` complex64 of unit power (the link
    pads to whole OFDM slots itself). A block never received keeps its last hard decisions, so
    ``sha256_received`` then differs from ``sha256_sent``.

    :param data: bytes to send.
    :param mcs_index: I_MCS of ``table``.
    :param cond: channel condition (``snr_db`` = Es/N0 per data RE).
    :param link: ``link(x, cond) -> (y, no_eff)``, e.g. :class:`~dekasim.channels.OFDMLink`.
    :param seed: seeds Sionna's and torch's generators (``sionna.phy.config.seed``).
    :param block_channel_uses: symbols per full transport block.
    :param max_rounds: ARQ rounds at most (the first transmission is round 1).
    :param batch_blocks: blocks per link call (memory vs. speed only).
    :raises ConfigError: naming ``mcs_index``, ``max_rounds``, ``batch_blocks`` or ``data``.
    """
    import sionna.phy

    t0 = time.perf_counter()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigError("data", type(data).__name__, "bytes")
    for name, v in (("max_rounds", max_rounds), ("batch_blocks", batch_blocks)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, v, "an integer >= 1")
    data = bytes(data)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    plans = _blocks(int(bits.size), mcs_index, table, block_channel_uses)
    first = sum(p.n_channel_uses for p in plans)
    assert first == mcs.downlink_channel_uses(len(data), mcs_index, table, block_channel_uses)
    starts = np.cumsum([0] + [p.info_bits for p in plans])
    received = np.zeros(int(starts[-1]), dtype=np.uint8)
    sionna.phy.config.seed = int(seed)
    chains = {p: LDPCQAMChain(p, ldpc_iterations) for p in dict.fromkeys(plans)}  # ordered: reproducible
    pending = list(range(len(plans)))
    sends = uses = rounds = first_errors = 0
    padded = np.zeros(int(starts[-1]), dtype=np.float32)
    padded[: bits.size] = bits
    with torch.no_grad():
        while pending and rounds < max_rounds:
            rounds += 1
            failed: list[int] = []
            for plan, chain in chains.items():
                todo = [i for i in pending if plans[i] == plan]
                for j in range(0, len(todo), batch_blocks):
                    idx = todo[j: j + batch_blocks]
                    u_bits = torch.from_numpy(np.stack([padded[starts[i]: starts[i + 1]] for i in idx]))
                    x, u = chain.encode(u_bits.to(chain.encoder.device))
                    y, no_eff = link(x, cond)
                    u_hat = chain.decode(y, no_eff)
                    ok = (u_hat == u).reshape(len(idx), -1).all(dim=1).cpu().numpy()
                    out = chain.payload_bits(u_hat).cpu().numpy().astype(np.uint8)
                    for r, i in enumerate(idx):
                        received[starts[i]: starts[i + 1]] = out[r]
                        if not ok[r]:
                            failed.append(i)
                    sends += len(idx)
                    uses += len(idx) * plan.n_channel_uses
            if rounds == 1:
                first_errors = len(failed)
            pending = sorted(failed)
    got = np.packbits(received[: bits.size]).tobytes()
    return DownlinkResult(
        mcs_index=int(mcs_index), n_bytes=len(data), n_blocks=len(plans), transmissions=sends, rounds=rounds,
        channel_uses=uses, channel_uses_first_round=first, residual_block_errors=len(pending),
        first_round_bler=first_errors / len(plans) if plans else 0.0, delivered=got == data,
        sha256_sent=hashlib.sha256(data).hexdigest(), sha256_received=hashlib.sha256(got).hexdigest(),
        runtime_s=round(time.perf_counter() - t0, 4))


def calibrate_mcs(cond: Condition, link: Any, *, seed: int, margins_db: Sequence[float] = (0.0, 3.0, 6.0, 9.0),
                  n_blocks: int = 32, table: str = "qam64",
                  block_channel_uses: int = mcs.DOWNLINK_BLOCK_CHANNEL_USES) -> dict[str, Any]:
    """Link adaptation for the downlink by a short calibration: the MCS of highest goodput at ``cond``.

    The AWGN thresholds of :func:`~dekasim.codecs.mcs.select_mcs` are optimistic on a block-fading TDL
    with estimated CSI (a 1024-symbol block sees about one channel realisation), so the candidates are
    ``select_mcs(snr_db - m)`` for each margin ``m`` in ``margins_db``; each sends ``n_blocks`` random full
    blocks at ``cond`` (seeded from ``seed``, independent of the pack's own draws), and the winner
    maximises ``info_bits * (1 - BLER) / n`` (ARQ goodput per channel use; ties go to the lower MCS).

    :returns: ``{"mcs_index", "candidates": {index: {"bler", "goodput_bits_per_channel_use"}}, "n_blocks"}``.
    """
    import sionna.phy

    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ConfigError("n_blocks", n_blocks, "an integer >= 1")
    indices = sorted({mcs.select_mcs(cond.snr_db - m, block_channel_uses, table).index for m in margins_db})
    out: dict[str, Any] = {}
    best, best_goodput = indices[0], -1.0
    for i in indices:
        plan = mcs.plan_codeblocks(mcs.mcs_entry(i, table), block_channel_uses)
        chain = LDPCQAMChain(plan)
        sionna.phy.config.seed = (seed * 1_000_003 + i) & ((1 << 63) - 1)
        bits = torch.randint(0, 2, (n_blocks, plan.info_bits)).to(torch.float32)
        with torch.no_grad():
            x, u = chain.encode(bits)
            y, no_eff = link(x, cond)
            u_hat = chain.decode(y, no_eff)
        bler = float((u_hat != u).reshape(n_blocks, -1).any(dim=1).float().mean())
        goodput = plan.info_bits * (1.0 - bler) / block_channel_uses
        out[str(i)] = {"bler": bler, "goodput_bits_per_channel_use": goodput}
        if goodput > best_goodput + 1e-12:
            best, best_goodput = i, goodput
    return {"mcs_index": best, "candidates": out, "n_blocks": n_blocks, "margins_db": list(margins_db)}


@lru_cache(maxsize=16)
def _thresholds(block_channel_uses: int, table: str, margin_db: float) -> tuple[tuple[int, float], ...]:
    ok = mcs.supported_mcs_indices(block_channel_uses, table)
    return tuple((i, mcs.required_snr_db(mcs.mcs_entry(i, table), block_channel_uses) + margin_db) for i in ok)


def _select_index(snr_db: float, block_channel_uses: int, table: str, margin_db: float) -> int:
    """``select_mcs(snr_db, ...).index`` from thresholds computed once (the broadcast sweep asks ~10^4 times)."""
    levels = _thresholds(int(block_channel_uses), table, float(margin_db))
    if not levels:
        return mcs.select_mcs(snr_db, block_channel_uses, table, margin_db).index  # raises its ConfigError
    chosen = levels[0][0]
    for i, need in levels:
        if need <= snr_db:
            chosen = i
    return chosen


def broadcast_vs_unicast(n_bytes: int, user_snrs_db: Sequence[float], n_channel_uses_per_image: int | None = None,
                         table: str = "qam64", margin_db: float = 0.0, *,
                         block_channel_uses: int = mcs.DOWNLINK_BLOCK_CHANNEL_USES) -> dict[str, Any]:
    """First-round downlink cost [channel uses] of ``n_bytes`` to U users: unicast vs. broadcast.

    Each user gets ``select_mcs(snr_u, block_channel_uses, table, margin_db)``. Unicast sends the bytes
    once per user at that user's MCS; broadcast sends them once at the MCS of the worst user (min SNR;
    ``select_mcs`` is non-decreasing, so it is also the lowest user MCS and every user meets its BLER
    target). A user below the lowest supported MCS's required SNR gets that lowest MCS (as the
    adaptive digital codec does: the link still tries) and is flagged ``below_lowest_mcs``; its BLER
    then exceeds 10 %, and its retransmissions (not counted here) would make the true costs higher.

    :param user_snrs_db: Es/N0 per data RE of each user [dB], U >= 1 values.
    :param n_channel_uses_per_image: if given, the costs are also stated in images
        (``channel_uses / n_channel_uses_per_image``: how many images that many channel uses would send).
    :returns: ``{"n_bytes", "n_users", "table", "margin_db", "block_channel_uses", "users": [{"snr_db",
        "mcs_index", "below_lowest_mcs", "unicast_channel_uses"}], "mcs_indices", "n_users_below_lowest_mcs",
        "broadcast_mcs_index", "broadcast_channel_uses", "unicast_channel_uses",
        "broadcast_channel_uses_per_user", "unicast_channel_uses_per_user", "broadcast_gain"}`` (gain =
        unicast / broadcast), plus ``"*_images"`` versions of the four costs when asked.
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 1:
        raise ConfigError("n_bytes", n_bytes, "a whole number of bytes >= 1")
    snrs = [float(s) for s in user_snrs_db]
    if not snrs or not all(math.isfinite(s) for s in snrs):
        raise ConfigError("user_snrs_db", list(user_snrs_db), "one finite Es/N0 in dB per user, at least one user")
    if n_channel_uses_per_image is not None and (isinstance(n_channel_uses_per_image, bool) or not isinstance(
            n_channel_uses_per_image, int) or n_channel_uses_per_image < 1):
        raise ConfigError("n_channel_uses_per_image", n_channel_uses_per_image, "null or an integer >= 1")
    ok = mcs.supported_mcs_indices(block_channel_uses, mcs.check_mcs_table(table))
    floor_db = mcs.required_snr_db(mcs.mcs_entry(ok[0], table), block_channel_uses) + margin_db if ok else math.inf
    cost: dict[int, int] = {}

    def uses(i: int) -> int:
        if i not in cost:
            cost[i] = mcs.downlink_channel_uses(n_bytes, i, table, block_channel_uses)
        return cost[i]

    users = []
    for s in snrs:
        i = _select_index(s, block_channel_uses, table, margin_db)
        users.append({"snr_db": s, "mcs_index": i, "below_lowest_mcs": s < floor_db, "unicast_channel_uses": uses(i)})
    b_mcs = _select_index(min(snrs), block_channel_uses, table, margin_db)
    n_u = len(snrs)
    bc, uc = uses(b_mcs), sum(u["unicast_channel_uses"] for u in users)
    out: dict[str, Any] = {
        "n_bytes": n_bytes, "n_users": n_u, "table": table, "margin_db": float(margin_db),
        "block_channel_uses": int(block_channel_uses), "users": users,
        "mcs_indices": [u["mcs_index"] for u in users],
        "n_users_below_lowest_mcs": sum(u["below_lowest_mcs"] for u in users),
        "broadcast_mcs_index": b_mcs, "broadcast_channel_uses": bc, "unicast_channel_uses": uc,
        "broadcast_channel_uses_per_user": bc / n_u, "unicast_channel_uses_per_user": uc / n_u,
        "broadcast_gain": uc / bc}
    if n_channel_uses_per_image is not None:
        for key in ("broadcast_channel_uses", "unicast_channel_uses", "broadcast_channel_uses_per_user",
                    "unicast_channel_uses_per_user"):
            out[key.replace("channel_uses", "images")] = out[key] / n_channel_uses_per_image
    return out


def broadcast_sweep(n_bytes: int, users: Sequence[int] = (1, 2, 4, 8, 16, 32, 64), snr_db_mean: float = 10.0,
                    snr_db_std: float = 5.0, snr_db_min: float = 0.0, snr_db_max: float = 25.0, draws: int = 200,
                    seed: int = 0, table: str = "qam64", margin_db: float = 0.0) -> list[dict[str, Any]]:
    """Per-user downlink cost of broadcast vs. unicast against the number of users U.

    For each U, ``draws`` sets of U user SNRs [dB], i.i.d. normal(``snr_db_mean``, ``snr_db_std``) and
    clipped to [``snr_db_min``, ``snr_db_max``] (clipping, not redrawing: the edges carry the tails'
    mass), each priced by :func:`broadcast_vs_unicast`. Draws of U come from
    ``numpy.random.default_rng([seed, U])``, so a row does not depend on the other U asked for.

    :returns: one row per U: ``{"n_users", "draws", "broadcast_per_user_mean", "broadcast_per_user_ci95",
        "unicast_per_user_mean", "unicast_per_user_ci95", "broadcast_gain_mean", "broadcast_gain_ci95",
        "users_below_lowest_mcs"}`` (costs in channel uses per user; ci95 = half-width of the 95 %
        Student-t interval of the mean over draws; the last is a total over all draws).
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError("draws", draws, "an integer >= 1")
    if not snr_db_std >= 0 or not snr_db_min <= snr_db_max:
        raise ConfigError("snr_db_std", (snr_db_std, snr_db_min, snr_db_max),
                          "snr_db_std >= 0 and snr_db_min <= snr_db_max [dB]")
    rows = []
    for u in users:
        if isinstance(u, bool) or not isinstance(u, int) or u < 1:
            raise ConfigError("users", list(users), "integers >= 1 (users per broadcast)")
        rng = np.random.default_rng([int(seed), u])
        snr = np.clip(rng.normal(snr_db_mean, snr_db_std, size=(draws, u)), snr_db_min, snr_db_max)
        res = [broadcast_vs_unicast(n_bytes, s.tolist(), table=table, margin_db=margin_db) for s in snr]
        row: dict[str, Any] = {"n_users": u, "draws": draws}
        for key, name in (("broadcast_channel_uses_per_user", "broadcast_per_user"),
                          ("unicast_channel_uses_per_user", "unicast_per_user"), ("broadcast_gain", "broadcast_gain")):
            row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci95([r[key] for r in res])
        row["users_below_lowest_mcs"] = sum(r["n_users_below_lowest_mcs"] for r in res)
        rows.append(row)
    return rows
