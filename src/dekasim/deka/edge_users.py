"""An edge that serves many users: a slot simulation of U users asking one edge for images of subjects whose
knowledge packs the edge fetches, caches and switches between.

**The model.** Time runs in request slots ``t = 0 .. T-1``. In every slot each of the U users asks for one
image of a subject drawn from the popularity law over the catalogue (Zipf with exponent ``s``, uniform at
``s = 0``: :func:`~dekasim.deka.edge_catalogue.popularity`). The pack of a subject is needed *at the edge*
(its metaword and G-LoRA to generate the aligned image, its CALA bank to encode it) and *at the user's
decoder* (the CALA bank).

- A request whose pack is at the edge (in the cache, or arriving in this slot) is served **aligned** at once,
  with the subject's aligned consistency. If that user's decoder has never received the pack, the edge sends
  it the CALA bank part by unicast at the user's own MCS, priced by
  :func:`~dekasim.codecs.mcs.downlink_channel_uses` of the ``cala_bank*.safetensors`` file's bytes (first
  round, no ARQ, its latency ignored) and charged to that user.
- Any other request is served **unaligned** (the subject's unaligned consistency) and waits for its pack: if
  no fetch of that pack is queued or in flight, one is queued; otherwise the request joins it. Its *delay
  until aligned service* is the number of slots from the request to the slot its pack arrives.
- **Fetches** go over one pack downlink that carries ``pack_channel_uses_per_slot`` channel uses per slot,
  one fetch after the other, first come first served (a fluid queue: a fetch starts when the downlink is
  free, in the slot where it is, and ends after ``channel uses / pack_channel_uses_per_slot`` slots). A
  pack is at the edge from the slot after its fetch ends: a fetch that starts at the beginning of slot ``t``
  on an idle downlink arrives in slot ``t + ceil(channel uses / pack_channel_uses_per_slot)``. When a fetch
  starts, its **broadcast group** is every user with a request waiting for that pack: the pack is sent once,
  at the MCS of the group's worst user (lowest Es/N0; the MCS of every user comes from
  :func:`~dekasim.codecs.mcs.select_mcs` at its Es/N0 less ``mcs_margin_db``), its channel uses are split
  equally among the group and charged when it starts (a fetch still in flight at the end is charged in
  full), and the group's decoders hear it (they get the bank with it). A user whose request joins while the
  fetch is already in flight missed its first blocks: it is not in the group (it pays nothing for it), is
  served aligned when the pack arrives, and gets the bank by unicast at its next aligned request, like any
  user who never heard a pack.
- **What a fetch costs** is simulated, not priced: the pack's real bytes
  (:func:`~dekasim.deka.downlink.pack_bytes`) through :func:`~dekasim.deka.downlink.simulate_downlink` (5G
  LDPC + QAM transport blocks over the :class:`~dekasim.channels.OFDMLink` at a TDL condition, ARQ until every
  block is received or ``max_rounds``), at the group's MCS and at the worst user's Es/N0 (the binding link;
  the others, better placed at the same MCS, are assumed to receive within the same rounds, and the edge's
  own reception no worse). LDPC decoding makes a simulation cost tens of seconds, so for each distinct
  (pack bytes, MCS, condition) :class:`DownlinkOutcomes` runs it ``R`` times with distinct seeds, once, and
  every fetch draws one of those ``R`` outcomes (channel uses with retransmissions, delivered, the received
  bytes' sha256) with the simulation's generator. A fetch whose outcome was not delivered (residual block
  errors: the received sha256 differs from the pack's) leaves its users unaligned and is retried in the slot
  after it ends, ahead of the queue, with the users then waiting as its group.
- **Cache**: the packs that arrived, in a :class:`~dekasim.deka.edge_cache.ByteCache` of ``cache_bytes``
  bytes with policy LRU or LFU (ties by recency); a hit is an access. A pack larger than the cache is never
  cached: it serves the requests of its arrival slot and is dropped.
- **The edge's adapters**: every pack at the edge is loaded as a named peft LoRA adapter in the edge UNet when
  it arrives and deleted when it leaves. Within a slot the edge serves requests **grouped by adapter set**
  (``serve_order = "grouped"``: first the set already active, then the packs in catalogue order, then the
  unaligned requests: no adapter); ``"arrival"`` serves them in user order. A *switch* is charged whenever the
  active set changes between consecutive requests served: pack to pack (``set_adapter``), none to pack
  (``set_adapter`` + ``enable_adapters``), pack to none (``disable_adapters``). Their costs, and those of
  loading and deleting an adapter, are times measured on the real edge
  (:func:`dekasim.deka.edge_adapters.measure_adapter_costs`), for two strategies: adapters kept unmerged
  (switch = the calls above) or merged into the weights (switch = ``unfuse_lora`` + ``fuse_lora``).

**Accounting.** Per user: channel uses per image = (T ``image_channel_uses`` + its shares of the
broadcasts + its bank unicasts) / T; the sum over users equals the edge's total (images + fetches + bank
unicasts) exactly. Consistency per user: the mean over its T requests. Delay: per request that missed and
whose pack arrived within the T slots (the others are counted as censored).

**Randomness.** One seed. Each user's Es/N0 and request sequence come from generators seeded by (seed,
replication, user) and (seed, replication, user, ``zipf_s``, catalogue size): the same users and requests in
every cache size, policy and number of users (common random numbers; user ``u`` of U = 8 is user ``u`` of U =
64). The fetch outcome draws come from a generator seeded by (seed, replication, the configuration), so
adding a configuration changes no other. Replications redraw users and requests; they are the independent
units of every interval (users of one edge share its cache and broadcasts, so they are not independent).
The R simulated outcomes per key are shared by all configurations and replications.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dekasim.codecs import mcs
from dekasim.conditions import Condition
from dekasim.deka.downlink import pack_bytes, simulate_downlink
from dekasim.deka.edge_cache import ByteCache
from dekasim.deka.edge_catalogue import PackInfo, Subject, popularity
from dekasim.errors import ConfigError

log = logging.getLogger(__name__)

#: Channel uses of one image: the 48x8x8 latent at bandwidth ratio 1/6 (the main job's default).
DEFAULT_IMAGE_CHANNEL_USES = 512
#: Pack downlink per request slot [channel uses]: a whole 20 MHz NR carrier at 15 kHz (106 PRBs = 1272
#: subcarriers) with the project's grid's 12 data symbols per subcarrier and 1 ms slot
#: (:class:`~dekasim.channels.grid.GridConfig`: 912 data REs on 76 subcarriers), over a request slot of 100 ms
#: (each user asks for an image every 100 ms): 12 x 1272 x 100.
DEFAULT_PACK_CHANNEL_USES_PER_SLOT = 12 * 1272 * 100
SERVE_ORDERS = ("grouped", "arrival")
#: Switch kinds counted by the simulation: pack -> pack, none -> pack, pack -> none.
SWITCH_KINDS = ("swap", "on", "off")


def sub_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (their reprs hashed): the same parts give the same seed in any run."""
    return int.from_bytes(hashlib.sha256("|".join(repr(p) for p in parts).encode()).digest()[:8], "big") >> 1


def _check_int(name: str, v: Any, lo: int, fix: str | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(name, v, f"an integer >= {lo}", fix)
    return v


def _check_float(name: str, v: Any, fix: str | None = None, lo: float = -math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
        raise ConfigError(name, v, f"a finite number >= {lo:g}" if lo > -math.inf else "a finite number", fix)
    return float(v)


@dataclass(frozen=True)
class UserSnrLaw:
    """Users' Es/N0 per data RE [dB]: normal(``mean_db``, ``std_db``), rounded to the nearest multiple of
    ``step_db`` (so that few distinct worst-user conditions need a downlink simulation) and clipped to
    [``min_db``, ``max_db``]. Each user keeps its Es/N0 for the whole run."""

    mean_db: float = 10.0
    std_db: float = 4.0
    step_db: float = 5.0
    min_db: float = 5.0
    max_db: float = 15.0

    def __post_init__(self) -> None:
        _check_float("snr_db_mean", self.mean_db)
        _check_float("snr_db_std", self.std_db, lo=0.0)
        if not _check_float("snr_db_step", self.step_db) > 0:
            raise ConfigError("snr_db_step", self.step_db, "a step > 0 dB", "e.g. --snr-step-db 5")
        if not _check_float("snr_db_min", self.min_db) <= _check_float("snr_db_max", self.max_db):
            raise ConfigError("snr_db_min", self.min_db, f"at most snr_db_max ({self.max_db:g} dB)")

    def draw(self, rng: np.random.Generator) -> float:
        """One user's Es/N0 [dB]."""
        x = round(float(rng.normal(self.mean_db, self.std_db)) / self.step_db) * self.step_db
        return float(min(max(x, self.min_db), self.max_db))


@dataclass(frozen=True)
class LinkSettings:
    """The pack downlink that :func:`~dekasim.deka.downlink.simulate_downlink` simulates.

    :param tdl_profile: the channel profile (:class:`~dekasim.conditions.Condition`).
    :param delay_spread_ns: its RMS delay spread [ns].
    :param speed_mps: the receivers' speed [m/s].
    :param csi: the receiver's channel estimate (``"perfect"``, ``"ls"``, ``"lmmse"``).
    :param carrier_frequency_hz: carrier [Hz].
    :param mcs_table: TS 38.214 table of :func:`~dekasim.codecs.mcs.select_mcs`.
    :param mcs_margin_db: subtracted from a user's Es/N0 before ``select_mcs`` (its AWGN thresholds are
        optimistic on a TDL with estimated CSI; see the docs for the measured BLERs behind the default).
    :param max_rounds: ARQ rounds at most.
    :param outcomes_per_key: R, simulated outcomes per (pack bytes, MCS, condition).
    """

    tdl_profile: str = "C"
    delay_spread_ns: float = 300.0
    speed_mps: float = 0.0
    csi: str = "ls"
    carrier_frequency_hz: float = 3.5e9
    mcs_table: str = "qam64"
    mcs_margin_db: float = 5.0
    max_rounds: int = 50
    outcomes_per_key: int = 4

    def __post_init__(self) -> None:
        from dekasim.channels.link import CSI_MODES

        if self.csi not in CSI_MODES:
            raise ConfigError("csi", self.csi, f"one of {list(CSI_MODES)}", "e.g. --csi ls")
        mcs.check_mcs_table(self.mcs_table)
        _check_float("mcs_margin_db", self.mcs_margin_db)
        _check_int("max_rounds", self.max_rounds, 1)
        _check_int("downlink_outcomes", self.outcomes_per_key, 1, "e.g. --downlink-outcomes 4")
        Condition(snr_db=10.0, delay_spread_ns=self.delay_spread_ns, tdl_profile=self.tdl_profile,
                  speed_mps=self.speed_mps)  # validates the channel keys

    def condition(self, snr_db: float) -> Condition:
        return Condition(snr_db=float(snr_db), delay_spread_ns=self.delay_spread_ns, tdl_profile=self.tdl_profile,
                         speed_mps=self.speed_mps, bandwidth_ratio=1 / 6)

    def mcs_index(self, snr_db: float) -> int:
        """A user's MCS: ``select_mcs(snr_db - mcs_margin_db)`` at the downlink's transport block length."""
        return mcs.select_mcs(float(snr_db) - self.mcs_margin_db, mcs.DOWNLINK_BLOCK_CHANNEL_USES,
                              self.mcs_table).index


@dataclass(frozen=True)
class EdgeSettings:
    """Everything one run of :func:`run_edge_users` keeps fixed across its configurations.

    :param slots: T, request slots per replication (each user asks for one image per slot).
    :param replications: independent runs per configuration (new users and requests each).
    :param image_channel_uses: channel uses of one image (512: 48x8x8 latents at 1/6).
    :param pack_channel_uses_per_slot: the pack downlink's channel uses per slot
        (:data:`DEFAULT_PACK_CHANNEL_USES_PER_SLOT`).
    :param serve_order: ``"grouped"`` or ``"arrival"`` (module doc).
    :param catalogue_size: N subjects (None: the catalogue's own).
    :param seed: the one seed.
    """

    slots: int = 1000
    replications: int = 5
    image_channel_uses: int = DEFAULT_IMAGE_CHANNEL_USES
    pack_channel_uses_per_slot: int = DEFAULT_PACK_CHANNEL_USES_PER_SLOT
    serve_order: str = "grouped"
    catalogue_size: int | None = 16
    seed: int = 0
    snr: UserSnrLaw = field(default_factory=UserSnrLaw)
    link: LinkSettings = field(default_factory=LinkSettings)

    def __post_init__(self) -> None:
        _check_int("slots", self.slots, 1, "e.g. --slots 200")
        _check_int("replications", self.replications, 1, "e.g. --replications 5")
        _check_int("image_channel_uses", self.image_channel_uses, 1, "e.g. --image-channel-uses 512")
        _check_int("pack_channel_uses_per_slot", self.pack_channel_uses_per_slot, 1)
        _check_int("seed", self.seed, 0)
        if self.catalogue_size is not None:
            _check_int("catalogue_size", self.catalogue_size, 1, "e.g. --catalogue-size 16")
        if self.serve_order not in SERVE_ORDERS:
            raise ConfigError("serve_order", self.serve_order, f"one of {list(SERVE_ORDERS)}")


@dataclass(frozen=True)
class EdgeConfig:
    """One configuration: U users, a cache of ``cache_bytes`` bytes with ``policy``, Zipf exponent ``zipf_s``."""

    users: int
    cache_bytes: int
    policy: str
    zipf_s: float

    def __post_init__(self) -> None:
        _check_int("users", self.users, 1, "e.g. --users 1,2,4,8,16,32,64")
        ByteCache(self.cache_bytes, self.policy)  # checks both
        popularity(1, self.zipf_s)  # checks the exponent

    def key(self) -> str:
        return f"U={self.users}|cache={self.cache_bytes}|{self.policy}|s={float(self.zipf_s)!r}"


# --------------------------------------------------------------------------------------------------
# Fetch outcomes
# --------------------------------------------------------------------------------------------------

#: What an outcome keeps of a :class:`~dekasim.deka.downlink.DownlinkResult`.
OUTCOME_FIELDS = ("channel_uses", "channel_uses_first_round", "n_blocks", "transmissions", "rounds",
                  "first_round_bler", "residual_block_errors", "delivered", "sha256_sent", "sha256_received",
                  "runtime_s")


class DownlinkOutcomes:
    """Simulated pack fetches per (pack bytes, MCS, condition), computed once, on first need, and shared.

    :param link: the downlink settings (channel, receiver, ARQ rounds, R).
    :param seed: outcome ``i`` of a key is simulated with seed ``sub_seed(seed, key, i)``.
    :param store: a JSON file that keeps the outcomes between runs (read if it exists, rewritten after every
        new key), or None.
    :param simulate: the simulator, :func:`~dekasim.deka.downlink.simulate_downlink` by default (tests pass a
        stand-in with the same signature).
    """

    def __init__(self, link: LinkSettings, seed: int, store: str | Path | None = None,
                 simulate: Callable[..., Any] | None = None) -> None:
        self.link, self.seed = link, int(seed)
        self.store = Path(store) if store is not None else None
        self.simulate = simulate or simulate_downlink
        self.entries: dict[str, dict[str, Any]] = {}
        self.simulated_s = 0.0
        self._ofdm = None
        self._bytes: dict[Path, bytes] = {}
        if self.store is not None and self.store.is_file():
            self.entries = json.loads(self.store.read_text()).get("entries", {})

    def key(self, pack: PackInfo, mcs_index: int, snr_db: float) -> str:
        s = self.link
        return (f"sha256={pack.sha256}|mcs={mcs_index}|{s.mcs_table}|snr_db={float(snr_db)!r}|tdl={s.tdl_profile}"
                f"|ds_ns={float(s.delay_spread_ns)!r}|speed_mps={float(s.speed_mps)!r}|csi={s.csi}"
                f"|fc_hz={float(s.carrier_frequency_hz)!r}|max_rounds={s.max_rounds}")

    def _link(self) -> Any:
        if self._ofdm is None:
            from dekasim.channels import OFDMLink
            from dekasim.channels.grid import GridConfig

            self._ofdm = OFDMLink(GridConfig(), csi=self.link.csi, carrier_frequency_hz=self.link.carrier_frequency_hz)
        return self._ofdm

    def get(self, pack: PackInfo, mcs_index: int, snr_db: float) -> list[dict[str, Any]]:
        """The first R outcomes of this key (simulating those not yet known)."""
        key = self.key(pack, mcs_index, snr_db)
        entry = self.entries.setdefault(key, {"pack_sha256": pack.sha256, "pack_bytes": pack.size_bytes,
                                              "mcs_index": int(mcs_index), "snr_db": float(snr_db),
                                              "outcomes": []})
        todo = range(len(entry["outcomes"]), self.link.outcomes_per_key)
        if len(todo):
            d = pack.directory
            if d not in self._bytes:
                self._bytes[d] = pack_bytes(d)
            cond = self.link.condition(snr_db)
            for i in todo:
                seed = sub_seed(self.seed, key, i)
                t0 = time.perf_counter()
                r = self.simulate(self._bytes[d], int(mcs_index), cond, self._link(), seed=seed,
                                  max_rounds=self.link.max_rounds, table=self.link.mcs_table)
                self.simulated_s += time.perf_counter() - t0
                row = {k: getattr(r, k) for k in OUTCOME_FIELDS}
                row["seed"] = seed
                entry["outcomes"].append(row)
                log.info("downlink outcome %d/%d of MCS %d at %.3g dB (%d B): %d channel uses, %d rounds, "
                         "delivered %s, %.1f s", i + 1, self.link.outcomes_per_key, mcs_index, snr_db,
                         pack.size_bytes, r.channel_uses, r.rounds, r.delivered, r.runtime_s)
            self.save()
        return entry["outcomes"][: self.link.outcomes_per_key]

    def save(self) -> None:
        if self.store is not None:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.store.with_suffix(".tmp")
            tmp.write_text(json.dumps({"what": "simulated pack fetches (dekasim.deka.edge_users.DownlinkOutcomes)",
                                       "seed": self.seed, "entries": self.entries}, indent=1))
            tmp.replace(self.store)


# --------------------------------------------------------------------------------------------------
# One replication
# --------------------------------------------------------------------------------------------------

@dataclass
class _Fetch:
    key: str
    created: int                       #: first slot it may start in
    waiting: list[tuple[int, int]]     #: (user, request slot) of every request waiting for it
    attempt: int = 1
    group: list[int] = field(default_factory=list)  #: the users it was broadcast to, once started


def _unicast_price(bank_bytes: int, mcs_index: int, table: str, cache: dict[tuple[int, int], int]) -> int:
    if (bank_bytes, mcs_index) not in cache:
        cache[(bank_bytes, mcs_index)] = mcs.downlink_channel_uses(bank_bytes, mcs_index, table)
    return cache[(bank_bytes, mcs_index)]


def draw_users(settings: EdgeSettings, n_users: int, replication: int) -> np.ndarray:
    """Es/N0 [dB] ``[n_users]`` of users ``0 .. n_users-1`` of a replication (user ``u`` alike for every U)."""
    return np.array([settings.snr.draw(np.random.default_rng(sub_seed(settings.seed, "snr", replication, u)))
                     for u in range(n_users)])


def draw_requests(settings: EdgeSettings, n_users: int, n_subjects: int, zipf_s: float, replication: int) -> np.ndarray:
    """Requested subject indices ``[n_users, slots]`` (user ``u``'s row alike for every U, cache and policy)."""
    p = popularity(n_subjects, zipf_s)
    rows = [np.random.default_rng(sub_seed(settings.seed, "requests", replication, u, float(zipf_s), n_subjects))
            .choice(n_subjects, size=settings.slots, p=p) for u in range(n_users)]
    return np.stack(rows).astype(np.int64)


def simulate_edge(config: EdgeConfig, settings: EdgeSettings, subjects: Sequence[Subject], outcomes: DownlinkOutcomes,
                  replication: int = 0, *, snr_db: np.ndarray | None = None,
                  requests: np.ndarray | None = None) -> dict[str, Any]:
    """One replication of one configuration (module doc).

    :param subjects: the catalogue (N subjects, popularity rank = index + 1).
    :param snr_db: users' Es/N0 ``[U]`` [dB] (default :func:`draw_users`; tests pass their own).
    :param requests: ``[U, T]`` requested subject indices (default :func:`draw_requests`).
    :return: ``{"replication", "users": {column: [U values]}, "edge": {...}, "received": [U dicts pack_key ->
        sha256 received]}``; channel uses in complex symbols, delays in slots.
    """
    n_users, n_slots, per_slot = config.users, settings.slots, settings.pack_channel_uses_per_slot
    snr = draw_users(settings, n_users, replication) if snr_db is None else np.asarray(snr_db, dtype=float)
    req = draw_requests(settings, n_users, len(subjects), config.zipf_s, replication) if requests is None \
        else np.asarray(requests, dtype=np.int64)
    if snr.shape != (n_users,) or req.shape != (n_users, n_slots):
        raise ValueError(f"simulate_edge: snr_db {snr.shape} / requests {req.shape} for U={n_users}, T={n_slots}")
    rng = np.random.default_rng(sub_seed(settings.seed, "fetches", replication, config.key()))
    link = settings.link
    mcs_of = {s: link.mcs_index(s) for s in sorted(set(snr.tolist()))}
    user_mcs = [mcs_of[s] for s in snr.tolist()]
    pack_of: dict[str, PackInfo] = {}
    rank: dict[str, int] = {}
    for i, s in enumerate(subjects):
        pack_of.setdefault(s.pack_key, s.pack)
        rank.setdefault(s.pack_key, i)
    keys = [s.pack_key for s in subjects]
    aligned_c = [s.consistency_aligned for s in subjects]
    unaligned_c = [s.consistency_unaligned for s in subjects]

    cache = ByteCache(config.cache_bytes, config.policy)
    queue: list[_Fetch] = []
    pending: dict[str, _Fetch] = {}
    flights: list[dict[str, Any]] = []   # started fetches, in start (= completion) order
    server_free = 0.0                     # when the pack downlink finishes what it has started [slots]
    prices: dict[tuple[int, int], int] = {}
    received: list[dict[str, str]] = [{} for _ in range(n_users)]
    z = lambda: np.zeros(n_users)  # noqa: E731
    pack_cu, bank_cu, cons, cons_un = z(), z(), z(), z()
    n_bank, n_aligned, n_missed, delay_sum, n_delay, n_heard = (np.zeros(n_users, dtype=np.int64) for _ in range(6))
    edge: dict[str, Any] = {"fetches_started": 0, "fetches_delivered": 0, "fetches_failed": 0, "fetch_channel_uses": 0,
                            "pack_downlink_busy_slots": 0.0, "group_size_sum": 0, "evictions": 0, "adapter_loads": 0,
                            "adapter_deletes": 0, "dropped_uncacheable": 0, "max_queue": 0,
                            "switches": dict.fromkeys(SWITCH_KINDS, 0), "fetch_mcs": {}}
    active: str | None = None
    loaded: set[str] = set()

    def unload(key: str) -> None:
        nonlocal active
        loaded.discard(key)
        edge["adapter_deletes"] += 1
        if active == key:
            active = None

    for t in range(n_slots):
        arrived: set[str] = set()
        retries: list[_Fetch] = []
        while flights and flights[0]["arrive"] == t:
            fl = flights.pop(0)
            f, o = fl["fetch"], fl["outcome"]
            if o["delivered"] and o["sha256_received"] == pack_of[f.key].sha256:
                edge["fetches_delivered"] += 1
                arrived.add(f.key)
                del pending[f.key]
                cached, evicted = cache.insert(f.key, pack_of[f.key].size_bytes)
                for e in evicted:
                    edge["evictions"] += 1
                    unload(e)
                loaded.add(f.key)
                edge["adapter_loads"] += 1
                for u, tr in f.waiting:
                    delay_sum[u] += t - tr
                    n_delay[u] += 1
                for u in f.group:
                    received[u][f.key] = o["sha256_received"]
                    n_heard[u] += 1
                if not cached:
                    edge["dropped_uncacheable"] += 1
            else:
                edge["fetches_failed"] += 1
                retries.append(_Fetch(f.key, t, f.waiting, f.attempt + 1))
                pending[f.key] = retries[-1]
        queue[:0] = retries

        served: list[str | None] = []
        for u in range(n_users):
            k = int(req[u, t])
            key = keys[k]
            cons_un[u] += unaligned_c[k]
            if key in cache or key in arrived:
                cache.access(key)
                bank = pack_of[key].bank_bytes
                if bank and key not in received[u]:
                    bank_cu[u] += _unicast_price(bank, user_mcs[u], link.mcs_table, prices)
                    n_bank[u] += 1
                    received[u][key] = pack_of[key].sha256
                cons[u] += aligned_c[k]
                n_aligned[u] += 1
                served.append(key)
            else:
                cons[u] += unaligned_c[k]
                n_missed[u] += 1
                served.append(None)
                f = pending.get(key)
                if f is None:
                    f = pending[key] = _Fetch(key, t, [])
                    queue.append(f)
                f.waiting.append((u, t))

        if settings.serve_order == "grouped":
            present = set(served)
            order = [active] if active in present else []
            order += sorted((k for k in present if k is not None and k != active), key=rank.__getitem__)
            order += [None] if None in present and active is not None else []
        else:
            order = served
        for a in order:
            if a != active:
                edge["switches"]["swap" if a is not None and active is not None else "on" if a is not None
                                 else "off"] += 1
                active = a
        for key in sorted(arrived - set(cache.keys())):
            unload(key)  # an uncacheable pack served its arrival slot only

        edge["max_queue"] = max(edge["max_queue"], len(queue))
        while queue and queue[0].created <= t and server_free < t + 1:
            f = queue.pop(0)
            f.group = group = sorted({u for u, _ in f.waiting})
            worst = min(group, key=lambda u: (snr[u], u))
            index = min(user_mcs[u] for u in group)
            pool = outcomes.get(pack_of[f.key], index, float(snr[worst]))
            o = pool[int(rng.integers(len(pool)))]
            cu = int(o["channel_uses"])
            for u in group:
                pack_cu[u] += cu / len(group)
            start = max(server_free, float(t))
            server_free = start + cu / per_slot
            edge["pack_downlink_busy_slots"] += max(0.0, min(server_free, float(n_slots)) - start)
            flights.append({"fetch": f, "outcome": o, "arrive": max(math.ceil(server_free), t + 1)})
            edge["fetches_started"] += 1
            edge["fetch_channel_uses"] += cu
            edge["group_size_sum"] += len(group)
            edge["fetch_mcs"][str(index)] = edge["fetch_mcs"].get(str(index), 0) + 1

    censored = np.zeros(n_users, dtype=np.int64)
    for f in pending.values():
        for u, _ in f.waiting:
            censored[u] += 1
    image_cu = settings.image_channel_uses
    edge["fetches_in_flight_at_end"] = len(flights)
    edge["fetches_queued_at_end"] = len(queue)
    edge["bank_channel_uses"] = int(bank_cu.sum())
    edge["image_channel_uses"] = n_users * n_slots * image_cu
    edge["total_channel_uses"] = edge["image_channel_uses"] + edge["fetch_channel_uses"] + edge["bank_channel_uses"]
    users = {
        "snr_db": snr.tolist(), "mcs_index": user_mcs,
        "channel_uses_per_image": ((n_slots * image_cu + pack_cu + bank_cu) / n_slots).tolist(),
        "broadcast_channel_uses": pack_cu.tolist(), "bank_channel_uses": bank_cu.astype(np.int64).tolist(),
        "bank_unicasts": n_bank.tolist(), "broadcasts_heard": n_heard.tolist(),
        "consistency": (cons / n_slots).tolist(), "consistency_unaligned_edge": (cons_un / n_slots).tolist(),
        "aligned_requests": n_aligned.tolist(), "missed_requests": n_missed.tolist(),
        "delay_slots_sum": delay_sum.tolist(), "delayed_requests": n_delay.tolist(),
        "censored_requests": censored.tolist()}
    return {"replication": replication, "users": users, "edge": edge, "received": received}

