"""The Monte-Carlo loop over sweep points, and the scripting entry point :func:`run_scenario`."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from dekasim.channels.link import OFDMLink
from dekasim.channels.snr import overhead_factor, snr_db_from_ebno_db
from dekasim.codecs.base import Codec, LinkCounts, build_codec, resolve_codec
from dekasim.conditions import Condition
from dekasim.deka.system import PREINSTALLED, SystemSpec
from dekasim.errors import ConfigError
from dekasim.metrics import (Interval, bounded_mean_interval, clustered_rate_interval, metric_interval,
                             proportion_interval, psnr_db, ssim, student_t_interval, unit_stats)
from dekasim.metrics.consistency import METRIC_RANGES
from dekasim.metrics.stats import exact_interval, totals_only_interval
from dekasim.scenarios.schema import CodecSpec, Scenario, load_scenario
from dekasim.sim.payloads import BitsSource, GeneratedSource, PhotoSource
from dekasim.sim.store import ResultStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPoint:
    """One codec at one condition with one receiver.

    :param carrier_frequency_hz: the point's carrier [Hz] when the scenario sweeps it, else None (the
        scenario's one carrier).
    :param ebno_db: the Eb/N0 [dB] of a point of an Eb/N0 sweep (``cond.snr_db`` is then the Es/N0 that the
        codec's MCS and block length give it), else None.
    """

    spec: CodecSpec
    cond: Condition
    csi: str
    carrier_frequency_hz: float | None = None
    ebno_db: float | None = None

    def _extra(self) -> dict[str, float]:
        """What only swept carriers and Eb/N0 sweeps add to the identity (none for other points: their ids stay)."""
        return {k: v for k, v in (("carrier_frequency_hz", self.carrier_frequency_hz), ("ebno_db", self.ebno_db))
                if v is not None}

    def key(self) -> str:
        """Canonical identity (codec label/name/options, condition, CSI; a DeKA-g system's edge and bank; a swept
        carrier; the Eb/N0 of an Eb/N0 sweep): what the point's id derives from."""
        d = {"codec": self.spec.label, "codec_name": self.spec.codec, "options": self.spec.options,
             "cond": self.cond.as_row(), "csi": self.csi, **self._extra()}
        if isinstance(self.spec, SystemSpec):
            d.update(edge=self.spec.edge, bank=self.spec.bank)
        return json.dumps(d, sort_keys=True)

    def draw_key(self) -> str:
        """What the point's channel and noise draws derive from: the whole :meth:`key` for a codec entry; the
        condition and receiver only for a DeKA-g system, so that every system of a condition sees the same
        prompts, seeds and channel draws (paired differences)."""
        if isinstance(self.spec, SystemSpec):
            return json.dumps({"cond": self.cond.as_row(), "csi": self.csi, "systems": "paired", **self._extra()},
                              sort_keys=True)
        return self.key()

    @property
    def point_id(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:16]


def point_seed(scenario_seed: int, point: SweepPoint) -> int:
    """Per-point seed from the scenario seed and the point's identity only (:meth:`SweepPoint.draw_key`),
    so adding or removing other points changes no point's numbers."""
    digest = hashlib.sha256(f"{scenario_seed}|{point.draw_key()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sweep_points(scenario: Scenario) -> list[SweepPoint]:
    """All points: the scenario's conditions with their receivers (:meth:`Scenario.points`: profile outer, SNR
    and receiver inner; AWGN with one receiver) x codecs.

    In an Eb/N0 sweep each codec gets the Es/N0 its Eb/N0 means: ``snr_db = ebno_db - 10 log10(overhead *
    n_channel_uses / info_bits_per_item)`` (:func:`dekasim.channels.snr.snr_db_from_ebno_db`; overhead = pilots
    and cyclic prefix of the grid, 1 over AWGN)."""
    several_carriers = len(scenario.carriers_hz) > 1
    rate: dict[str, float] = {}  # codec label -> information bits per channel use
    points = []
    for p in scenario.points():
        fc = p.carrier_frequency_hz if several_carriers else None
        for spec in scenario.codecs:
            cond = p.cond
            if p.ebno_db is not None:
                if spec.label not in rate:
                    rate[spec.label] = _bits_per_channel_use(scenario, spec)
                grid = None if cond.tdl_profile == "awgn" else scenario.grid
                cond = cond.replace(snr_db=snr_db_from_ebno_db(p.ebno_db, rate[spec.label], 1.0, grid))
            points.append(SweepPoint(spec, cond, p.csi, fc, p.ebno_db))
    return points


def _bits_per_channel_use(scenario: Scenario, spec: CodecSpec) -> float:
    """Information bits per channel use of a codec of a bit payload (its ``info_bits_per_item`` over its
    ``n_channel_uses``): what converts its Eb/N0 to Es/N0."""
    shape = (dict(scenario.payload_options)["block_bits"],)
    codec = _build(scenario, spec, shape, scenario.bandwidth_ratio[0])
    bits = getattr(codec, "info_bits_per_item", None)
    if not bits:
        raise ConfigError(f"codecs[{spec.label}].codec", spec.codec, "a codec with a fixed number of information "
                          "bits per block (attribute info_bits_per_item) for an Eb/N0 sweep", "sweep snr_db instead",
                          scenario.source)
    return bits / codec.n_channel_uses


def make_payload_source(scenario: Scenario, sample: bool = True):
    """The scenario's payload: photos, a generated set, or (``kind = "deka"``) a
    :class:`~dekasim.deka.system.DekaPayload` whose :meth:`view` gives each edge.

    :param sample: False loads and checks the models (generated, DeKA-g) but samples nothing yet: the
        source's ``sample()`` does that later (what :func:`check_scenario` hands to the run).
    """
    if scenario.payload_kind == "deka":
        from dekasim.deka.system import DekaPayload

        try:
            return DekaPayload(dict(scenario.payload_options), scenario.seed, device=scenario.device, sample=sample)
        except ConfigError as err:
            raise err.with_source(scenario.source) if scenario.source else err from None
    if scenario.payload_kind == "photos":
        return PhotoSource(scenario.resolution_px)
    if scenario.payload_kind == "bits":
        return BitsSource(dict(scenario.payload_options)["block_bits"], scenario.seed)
    if scenario.payload_kind == "generated":
        try:
            return GeneratedSource(**dict(scenario.payload_options), seed=scenario.seed,
                                   resolution_px=scenario.resolution_px, sample=sample)
        except ConfigError as err:
            field = err.field if err.field.startswith("payload") else f"payload.{err.field}"
            raise ConfigError(field, err.value, err.expected, err.fix, scenario.source) from None
    raise ConfigError("payload.kind", scenario.payload_kind, "photos or generated")


def payload_shapes(scenario: Scenario, source) -> dict[str, tuple[int, ...]]:
    """Item shape by representation of ``source`` (sampled or not): ``"bits"`` for a bit payload, else
    ``"image"``, and ``"latent"`` where the scenario sends latents."""
    if scenario.payload_kind == "deka":
        return source.shapes()
    if scenario.payload_kind == "bits":
        return {"bits": tuple(source.shape("bits"))}
    shapes = {"image": tuple(source.shape("image"))}
    if scenario.payload_representation == "latent":
        shapes["latent"] = tuple(source.shape("latent"))
    return shapes


def codec_representation(scenario: Scenario, codec_name: str) -> str:
    """What codec ``codec_name`` carries in ``scenario``: ``"bits"`` for a bit payload, ``"latent"`` when the
    payload is sent as latents (``[payload] representation = "latent"``) and the codec takes latents, else
    ``"image"``."""
    if scenario.payload_kind == "bits":
        return "bits"
    cls = resolve_codec("jscc" if codec_name == PREINSTALLED else codec_name)  # also "module:Class" on a worker
    takes_latents = "latent" in cls.payload_kinds
    return "latent" if scenario.payload_representation == "latent" and takes_latents else "image"


def build_codecs(scenario: Scenario, shapes: dict[str, tuple[int, ...]],
                 deka=None) -> dict[tuple[str, float], Codec]:
    """Every codec of the scenario at every bandwidth ratio (building validates their options).

    :param shapes: item shape by representation (``"image"``, and ``"latent"`` for latent payloads).
    :param deka: the :class:`~dekasim.deka.system.DekaPayload` of a DeKA-g scenario (it builds the
        pre-installed JSCC and the pack's CALA bank); None elsewhere.
    """
    out = {}
    for spec in scenario.codecs:
        shape = shapes[codec_representation(scenario, spec.codec)]
        for ratio in scenario.bandwidth_ratio:
            out[(spec.label, ratio)] = _build(scenario, spec, shape, ratio, deka)
    return out


def _build(scenario: Scenario, spec: CodecSpec, shape: tuple[int, ...], ratio: float, deka=None) -> Codec:
    """One codec of ``scenario`` (a DeKA-g system's through ``deka``); errors name its options' keys."""
    try:
        return (deka.build_codec(spec, shape, ratio) if deka is not None
                else build_codec(spec.codec, shape, ratio, **spec.options))
    except ConfigError as err:
        table = "systems" if isinstance(spec, SystemSpec) else "codecs"
        field = codec_error_key(err.field, f"{table}[{spec.label}]")
        raise ConfigError(field, err.value, err.expected, err.fix, scenario.source) from None


#: Tables of a scenario file: a codec's error naming one of them already names the full key.
_SCENARIO_TABLES = ("codecs", "systems", "sweep", "payload", "channel", "ofdm", "monte_carlo", "downlink")


def codec_error_key(field: str, entry: str) -> str:
    """The scenario key a codec's :class:`ConfigError` field stands for, in the codec table ``entry`` (e.g.
    ``codecs[digital]``): its ratio is ``sweep.bandwidth_ratio``; anything else is one of its options."""
    if field.startswith(_SCENARIO_TABLES):
        return field
    if field == "bandwidth_ratio":
        return "sweep.bandwidth_ratio"
    return f"{entry}.{field}" if field.startswith("options") else f"{entry}.options.{field}"


@dataclass
class CheckedScenario:
    """What :func:`check_scenario` built while checking: the payload source (models loaded, nothing
    sampled), its item shapes, and every codec at every bandwidth ratio. The run reuses them."""

    source: Any
    shapes: dict[str, tuple[int, ...]]
    codecs: dict[tuple[str, float], Codec]


def check_scenario(scenario: Scenario) -> CheckedScenario:
    """Every check :func:`run_scenario` makes, before anything is sampled or written; ``dekasim validate``
    and ``dekasim run`` both call it, so they cannot disagree.

    - the payload: models, pack (its bank, the pre-installed JSCC it names), prompts and image encoders
      load (:func:`make_payload_source` with ``sample=False``), and give the item shapes;
    - every codec (or system) at every bandwidth ratio is built as the run builds it
      (:func:`build_codecs`): its options, the payload shape it takes, and the rates it serves (the
      pre-installed JSCC and the pack's CALA bank included);
    - a DeKA-g scenario's ``[downlink]``: a fixed MCS the chain can send, the link at its condition;
    - link physics (pilot density against the delay spread) at every point and receiver.

    :raises ConfigError: naming the full key (``sweep.bandwidth_ratio``, ``systems[LABEL].options.KEY``, ...).
    """
    source = make_payload_source(scenario, sample=False)
    shapes = payload_shapes(scenario, source)
    codecs = build_codecs(scenario, shapes, source if scenario.payload_kind == "deka" else None)
    from dekasim.channels.link import resolve_domain
    from dekasim.channels.profiles import check_link_physics

    checks = [(p.cond, p.csi, p.carrier_frequency_hz) for p in scenario.points()]
    if scenario.payload_kind == "deka":
        checks += [(cond, csi, scenario.carrier_frequency_hz) for cond, csi in _downlink_checks(scenario)]
    for cond, csi, fc in checks:
        domain = resolve_domain(scenario.channel_domain, cond, scenario.grid, fc)
        try:
            check_link_physics(cond, scenario.grid, csi, fc, domain=domain)
        except ConfigError as err:
            raise err.with_source(scenario.source) if scenario.source else err from None
    return CheckedScenario(source, shapes, codecs)


def validate_scenario(scenario: Scenario) -> None:
    """``dekasim validate``: :func:`check_scenario` (everything :func:`run_scenario` checks before its first
    point), discarding what it built."""
    check_scenario(scenario)


def _downlink_checks(scenario: Scenario) -> list[tuple[Condition, str]]:
    """The ``[downlink]`` of a DeKA-g scenario: a fixed MCS must be one the digital chain sends in the
    downlink's transport blocks; returns the (condition, receiver) pairs the pack is sent at, whose link
    physics :func:`check_scenario` checks with the sweep's."""
    opts = dict(scenario.downlink)
    if not opts.get("simulate", True):
        return []
    if opts["mcs"] != "calibrated":
        from dekasim.codecs.mcs import DOWNLINK_BLOCK_CHANNEL_USES, mcs_entry, plan_codeblocks

        try:
            plan_codeblocks(mcs_entry(int(opts["mcs"])), DOWNLINK_BLOCK_CHANNEL_USES)
        except ConfigError as err:
            raise ConfigError("downlink.mcs", opts["mcs"], err.expected, "pick an index in that range or "
                              "'calibrated'", scenario.source) from None
    base = scenario.conditions()[0]
    return [(replace(base, snr_db=float(snr), delay_spread_ns=float(opts["delay_spread_ns"])), scenario.csi[0])
            for snr in opts["snr_db"]]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("dekasim", "torch", "sionna-no-rt", "numpy", "scipy", "pillow", "scikit-image"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


@dataclass
class _Tally:
    """What a Monte-Carlo run of one codec at one point accumulates."""

    psnrs: list[float]
    ssims: list[float]
    counts: LinkCounts | None
    info: dict[str, list]
    status: str
    sent: int
    user_images: list[torch.Tensor] | None = None  # DeKA-g payloads: the user's images, for end-to-end metrics
    timing: dict[str, float] = field(default_factory=lambda: {"codec": 0.0, "channel": 0.0, "metrics": 0.0})


def _transmit(point: SweepPoint, scenario: Scenario, source: PhotoSource, link: OFDMLink, codec: Codec,
              seed: int, images_min: int, images_max: int, with_ssim: bool = True,
              representation: str = "image") -> _Tally:
    """Send items (images, or latents when ``representation`` is ``"latent"``) through ``codec`` over
    ``link`` at ``point`` until the stop rules hold; metrics compare the images."""
    import sionna.phy

    sionna.phy.config.seed = seed  # reseeds Sionna's and torch's global generators
    mc = scenario.monte_carlo
    tally = _Tally([], [], None, {}, "done", 0, [] if hasattr(source, "end_to_end_scores") else None)
    n = codec.n_channel_uses
    while True:
        want = images_min - tally.sent if tally.sent < images_min else mc.batch_size
        size = min(mc.batch_size, want, images_max - tally.sent)
        items = source.items(tally.sent, size, representation).to(scenario.device)
        with torch.no_grad():
            t0 = time.perf_counter()
            x = codec.encode(items, point.cond)
            if tuple(x.shape) != (size, n) or not x.is_complex():
                raise RuntimeError(f"codec '{point.spec.codec}' emitted {tuple(x.shape)} {x.dtype}, "
                                   f"its declared channel uses are [{size}, {n}] complex")
            t1 = time.perf_counter()
            y, no_eff = link(x, point.cond)
            t2 = time.perf_counter()
            decoded = codec.decode(y, no_eff, point.cond)
            t3 = time.perf_counter()
        tally.timing["codec"] += (t1 - t0) + (t3 - t2)
        tally.timing["channel"] += t2 - t1
        if representation != "bits":  # random bits have no image: BER/BLER only
            images = source.to_image(items, representation)
            images_hat = source.to_image(decoded.payload, representation)
            tally.psnrs.extend(psnr_db(images, images_hat).tolist())
            if tally.user_images is not None:
                tally.user_images.append(images_hat.detach().float().clamp(0, 1).cpu())
            if with_ssim:
                tally.ssims.extend(ssim(images, images_hat).tolist())
        tally.timing["metrics"] += time.perf_counter() - t3
        if decoded.counts is not None:
            tally.counts = tally.counts or LinkCounts()
            tally.counts += decoded.counts
        for k, v in decoded.info.items():
            tally.info.setdefault(k, []).extend(v if isinstance(v, list) else [v])
        tally.sent += size
        if tally.sent < images_min:
            continue
        if tally.counts is None or mc.target_block_errors == 0:
            break
        if tally.counts.block_errors >= mc.target_block_errors:
            tally.status = "target_errors"
            break
        if tally.sent >= images_max:
            tally.status = "max_images"
            break
    return tally


def run_point(point: SweepPoint, scenario: Scenario, source: PhotoSource, link: OFDMLink,
              codec: Codec, seed: int, variant: Callable[[dict[str, Any]], Codec] | None = None,
              representation: str = "image") -> dict[str, Any]:
    """Send images (or, with ``representation = "latent"``, their latents) through ``codec`` over ``link``
    at ``point`` until the stop rules hold; one result row.

    A codec with :meth:`variants` (e.g. ``digital`` with ``mcs = "best"``, its default) is first calibrated:
    every variant sends ``monte_carlo.calibration_images`` images on draws seeded independently of the
    reported ones (the same draws for every variant); the variant with the highest mean PSNR (the first
    of equals) is then run as usual. When the list is done, a codec with ``more_variants(cond, tried)``
    (``tried``: ``[(overrides, mean PSNR)]`` so far) is asked for further ones until it returns none (a
    search). ``variant(options)`` builds the codec for one variant's option overrides.
    """
    mc = scenario.monte_carlo
    t0 = time.perf_counter()
    selection: dict[str, float] = {}
    variants = codec.variants(point.cond) if hasattr(codec, "variants") else []
    if variants:
        if variant is None:
            raise ValueError("run_point: a codec with variants needs the `variant` builder")
        calib_seed = (seed ^ 0x5DEECE66D) & ((1 << 63) - 1)
        best_psnr, best = -math.inf, codec
        pending, tried = list(variants), []
        while pending:
            overrides = pending.pop(0)
            candidate = variant(overrides)
            t = _transmit(point, scenario, source, link, candidate, calib_seed, mc.calibration_images,
                          mc.calibration_images, with_ssim=False, representation=representation)
            score = sum(t.psnrs) / len(t.psnrs)
            selection[json.dumps(overrides, sort_keys=True)] = round(score, 4)
            tried.append((overrides, score))
            if score > best_psnr:
                best_psnr, best = score, candidate
            if not pending and hasattr(codec, "more_variants"):  # (one already tried ends the search)
                pending = [o for o in codec.more_variants(point.cond, tried)
                           if json.dumps(o, sort_keys=True) not in selection]
        codec = best
    tally = _transmit(point, scenario, source, link, codec, seed, mc.images_per_point, mc.max_images_per_point,
                      representation=representation)
    runtime = time.perf_counter() - t0
    n = codec.n_channel_uses
    counts, info = tally.counts, tally.info
    psnr = student_t_interval(unit_stats(tally.psnrs), "image")
    ssim_iv = bounded_mean_interval(unit_stats(tally.ssims), "image", METRIC_RANGES["ssim"])
    intervals = {"psnr_db": psnr.as_entry(), "ssim": ssim_iv.as_entry()}
    row: dict[str, Any] = {
        "point_id": point.point_id, "codec": point.spec.label, "codec_name": point.spec.codec, "kind": codec.kind,
        **point.cond.as_row(), "csi": point.csi,
        "channel_uses": n, "slots_per_image": link.num_slots(n) if point.cond.tdl_profile != "awgn" else 0,
        "n_images": tally.sent, "psnr_db": _nan_none(psnr.estimate), "psnr_db_ci95": psnr.halfwidth,
        "ssim": _nan_none(ssim_iv.estimate), "ssim_ci95": ssim_iv.ci,
        "ber": None, "ber_ci95": None, "bler": None, "bler_ci95": None, "ebno_db": None,
        "bit_errors": None, "bits": None, "block_errors": None, "blocks": None,
        "status": tally.status, "runtime_s": round(runtime, 4), "seed": seed,
    }
    if counts is not None and counts.bits > 0:
        grid = None if point.cond.tdl_profile == "awgn" else scenario.grid
        bits_per_item = counts.bits / max(counts.blocks, 1)
        ber_iv, bler_iv = link_intervals(counts)
        intervals["ber"] = ber_iv.as_entry()
        if bler_iv is not None:
            intervals["bler"] = bler_iv.as_entry()
        row.update(
            ber=counts.bit_errors / counts.bits, ber_ci95=ber_iv.ci,
            bler=counts.block_errors / counts.blocks if counts.blocks else None,
            bler_ci95=bler_iv.ci if bler_iv is not None else None,
            bit_errors=counts.bit_errors, bits=counts.bits, block_errors=counts.block_errors, blocks=counts.blocks,
            ebno_db=point.cond.snr_db + 10 * math.log10(overhead_factor(grid) * n / bits_per_item))
    notes = link.physics_notes.get(link._key(point.cond)) if point.cond.tdl_profile != "awgn" else None
    if notes:
        info["physics_notes"] = notes
    row["info"] = _summarise_info(info)
    blocks = link.blocks_for(point.cond)
    row["channel_domain"] = blocks.domain
    if blocks.interference_estimate:
        row["info"]["interference_estimate"] = blocks.interference_estimate
    if representation != "image":
        row["info"]["payload_representation"] = f"{representation} {list(codec.payload_shape)}"
    if selection:
        row["info"]["variant_calibration_psnr_db"] = selection
    if tally.user_images is not None:
        t = time.perf_counter()
        e2e = end_to_end_metrics(source, torch.cat(tally.user_images))
        intervals.update(e2e.pop("intervals", {}))
        row.update(e2e)
        tally.timing["metrics"] += time.perf_counter() - t
    row["intervals"] = intervals
    row["timing_s"] = {k: round(v, 4) for k, v in tally.timing.items()}  # of the reported run (not calibration)
    row["runtime_s"] = round(time.perf_counter() - t0, 4)
    return row


def end_to_end_metrics(source, user_images: torch.Tensor) -> dict[str, Any]:
    """Consistency of the user's images (items ``0 .. N-1`` of ``source``) with the cloud's images for the
    same prompts and seeds: ``attribute_agreement``, ``all_attributes_agree``, ``feature_cosine`` (means and
    ``*_ci95`` 95 % intervals ``[lo, hi]`` over prompts, inside the metric's range:
    :func:`~dekasim.metrics.metric_interval`) on the prompts with the pack's subject, and the same on the
    control prompts under ``consistency_control`` (with its own ``intervals``); with
    ``payload.image_encoders`` also ``<name>_cosine`` (DINO/CLIP from local weights). ``intervals`` maps
    each subject metric to its unit, number of prompts, method and sufficient statistics."""
    from dekasim.deka.system import CONSISTENCY_METRICS

    n = len(user_images)
    scores, subject = source.end_to_end_scores(user_images, 0), source.subject_mask(0, n).numpy()
    out: dict[str, Any] = {"n_subject_images": int(subject.sum()), "consistency_control": None}
    for split, mask in (("subject", subject), ("control", ~subject)):
        vals: dict[str, Any] = {}
        intervals: dict[str, Any] = {}
        if mask.any():
            for m in scores:  # CONSISTENCY_METRICS, then <name>_cosine of local DINO/CLIP encoders
                iv = metric_interval(m, scores[m][mask], "prompt")
                vals[m], vals[f"{m}_ci95"], intervals[m] = iv.estimate, iv.ci, iv.as_entry()
        if split == "subject":
            out.update(vals or {m: None for m in CONSISTENCY_METRICS})
            out["intervals"] = intervals
        elif vals:
            out["consistency_control"] = {**vals, "intervals": intervals}
    return out


def link_intervals(counts: LinkCounts) -> tuple[Interval, Interval | None]:
    """The BER and BLER intervals of a point's :class:`~dekasim.codecs.base.LinkCounts`: BER over the
    counts' independent units (Korn-Graubard; the conservative bound over blocks when the codec gave
    totals only; none when ``exact``), BLER Clopper-Pearson over blocks (None without blocks)."""
    if counts.exact:
        ber = exact_interval({"n_units": counts.blocks, "sum_x": counts.bit_errors, "sum_n": counts.bits}, counts.unit)
        bler = exact_interval({"n_units": counts.blocks, "sum_x": counts.block_errors, "sum_n": counts.blocks},
                              counts.unit) if counts.blocks else None
        return ber, bler
    if counts.unit_stats is None:
        ber = totals_only_interval(counts.bit_errors, counts.bits, counts.blocks, counts.unit)
    else:
        ber = clustered_rate_interval(counts.unit_stats, counts.unit)
    bler = proportion_interval(counts.block_errors, counts.blocks, counts.unit, "clopper-pearson") \
        if counts.blocks else None
    return ber, bler


def _nan_none(v: float | None) -> float:
    return math.nan if v is None else v


def _summarise_info(info: dict[str, list]) -> dict[str, Any]:
    """Per-image lists become counts (strings) or means (numbers)."""
    out: dict[str, Any] = {}
    for k, vals in info.items():
        if k == "physics_notes":
            out[k] = vals
        elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[k] = sum(vals) / len(vals)
        else:
            counts: dict[str, int] = {}
            for v in vals:
                counts[str(v)] = counts.get(str(v), 0) + 1
            out[k] = counts
    return out


@dataclass
class RunResult:
    """What :func:`run_scenario` did: every row of the directory, how many points were already done, the
    figures, and for a DeKA-g scenario the sampling counts (``sampled``, ``cache_hits``, ``wall_s``) and
    the report (:func:`dekasim.deka.report.write_deka_report`); ``timing`` splits the wall time [s]."""

    out_dir: Path
    rows: list[dict[str, Any]]
    skipped: int
    figures: list[Path]
    generation: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    timing: dict[str, float] = field(default_factory=dict)  # wall s: generation, points (codec, channel,
    # metrics: summed over this run's points), report, plots


class _PointContext:
    """What every point of one scenario shares in a process: the payload, the codecs, one link per CSI."""

    def __init__(self, scenario: Scenario, checked: CheckedScenario | None = None) -> None:
        import sionna.phy

        sionna.phy.config.device = scenario.device
        self.scenario = scenario
        checked = checked or check_scenario(scenario)  # a Ray worker checks again: cheap, and never samples
        self.source = checked.source
        if hasattr(self.source, "sample"):
            self.source.sample()
        self.deka = self.source if scenario.payload_kind == "deka" else None
        self.shapes = checked.shapes
        self.codecs = checked.codecs
        self.links: dict[tuple[str, float], OFDMLink] = {}
        self._variants: dict[tuple, Codec] = {}

    def variant(self, spec: CodecSpec, ratio: float, overrides: dict[str, Any]) -> Codec:
        """The codec of ``spec`` with ``overrides`` applied to its options (built once)."""
        key = (spec.label, ratio, json.dumps(overrides, sort_keys=True))
        if key not in self._variants:
            shape = self.shapes[codec_representation(self.scenario, spec.codec)]
            if self.deka is not None:  # a DeKA-g sweep's ratio is per latent value: equal channel uses per image
                ratio = self.deka.equal_budget_ratio(shape, ratio)
            self._variants[key] = build_codec(spec.codec, shape, ratio, **{**spec.options, **overrides})
        return self._variants[key]

    def link(self, csi: str, carrier_frequency_hz: float | None = None) -> OFDMLink:
        """The link of receiver ``csi`` at ``carrier_frequency_hz`` (default: the scenario's carrier)."""
        s = self.scenario
        key = (csi, float(carrier_frequency_hz or s.carrier_frequency_hz))
        if key not in self.links:
            self.links[key] = OFDMLink(s.grid, csi, key[1], device=s.device, domain=s.channel_domain)
        return self.links[key]


_CONTEXTS: dict[str, _PointContext] = {}


def evaluate_point(scenario: Scenario, point: SweepPoint) -> dict[str, Any]:
    """One finished result row for ``point``; a pure function of (scenario, point), so a Ray worker
    and the local loop give identical rows. Payload, codecs and links are built once per process."""
    ctx = _context(scenario)
    ratio = point.cond.bandwidth_ratio
    codec = ctx.codecs[(point.spec.label, ratio)]
    source = ctx.deka.view(point.spec.edge) if ctx.deka is not None else ctx.source
    link = ctx.link(point.csi, point.carrier_frequency_hz)
    row = run_point(point, scenario, source, link, codec, point_seed(scenario.seed, point),
                    variant=lambda overrides: ctx.variant(point.spec, ratio, overrides),
                    representation=codec_representation(scenario, point.spec.codec))
    row["carrier_frequency_hz"] = link.carrier_frequency_hz
    if point.ebno_db is not None:  # the swept value itself (the row's formula gives it back up to rounding)
        row["ebno_db"] = point.ebno_db
    if scenario.payload_kind == "bits":  # the MCS and the block length set the channel uses, not a ratio
        row["bandwidth_ratio"] = None
    if ctx.deka is not None:
        row["system"] = ctx.deka.facts(point.spec, codec).as_row()
    row["scenario_hash"] = scenario.hash()
    return row


def _context(scenario: Scenario, checked: CheckedScenario | None = None) -> _PointContext:
    """The point context of ``scenario`` in this process (built once, from ``checked`` if given; one scenario
    at a time)."""
    key = scenario.hash() + scenario.device
    if key not in _CONTEXTS:
        _CONTEXTS.clear()
        _CONTEXTS[key] = _PointContext(scenario, checked)
    return _CONTEXTS[key]


def deka_payload(scenario: Scenario, checked: CheckedScenario | None = None):
    """The :class:`~dekasim.deka.system.DekaPayload` of a DeKA-g scenario in this process (built once)."""
    return _context(scenario, checked).deka


def run_scenario(scenario: Scenario | str | Path, out_dir: str | Path | None = None,
                 overrides: list[str] | None = None, progress: bool = True, plots: bool = True,
                 command: str | None = None, executor: str | None = None, address: str | None = None,
                 num_cpus: int | None = None,
                 on_row: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Run every codec x condition point of a scenario, appending one row per finished point.

    :param scenario: a :class:`Scenario` or the path of a TOML file (then ``overrides`` apply).
    :param out_dir: output directory; default the scenario's ``output_dir`` or ``runs/<name>``.
    :param progress: show a progress bar with ETA on stderr.
    :param plots: draw the figures into ``out_dir`` at the end.
    :param command: recorded in the manifest (default: this process's argv).
    :param executor: ``"local"`` (in-process) or ``"ray"``; default the scenario's ``executor``.
    :param address: Ray cluster address (default the scenario's ``ray_address``; none starts a local Ray).
    :param num_cpus: CPUs of a local Ray instance.
    :param on_row: called with each new row.
    :return: :class:`RunResult` with all rows of the directory (old and new).

    Every check (:func:`check_scenario`, the same as ``dekasim validate``) runs before the output directory
    is touched; a run that fails before its first row leaves the directory as it found it
    (:meth:`~dekasim.sim.store.ResultStore.abandon`). Rerunning into the same directory skips finished
    points; a different scenario is refused while the directory holds rows. Rows arrive in completion
    order (any order with Ray); each point's numbers depend only on the scenario seed and the point itself.

    Example::

        from dekasim.sim import run_scenario
        result = run_scenario("scenarios/default.toml", out_dir="runs/default", progress=False)
        first_psnr_db = result.rows[0]["psnr_db"]
    """
    from dekasim.sim.executors import make_executor

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, overrides)
    elif overrides:
        raise ValueError("overrides apply to scenario files; pass a path")
    out = Path(out_dir or scenario.output_dir or Path("runs") / scenario.name)
    manifest = {"scenario": scenario.to_dict(), "scenario_hash": scenario.hash(), "seed": scenario.seed,
                "source": scenario.source, "versions": _versions(),
                "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "snr_definition": "Es/N0 per data resource element [dB]"}
    if scenario.payload_kind == "deka":  # Ray workers may start elsewhere: one absolute cache for all
        opts = dict(scenario.payload_options)
        opts["cache_dir"] = str(Path(opts["cache_dir"]).resolve())
        scenario = replace(scenario, payload_options=tuple(sorted(opts.items())))
    checked = check_scenario(scenario)  # before the directory is touched
    store = ResultStore(out, manifest)
    try:
        done = store.finished_point_ids()
        points = sweep_points(scenario)
        pending = [p for p in points if p.point_id not in done]
        deka = None
        timing: dict[str, float] = {}
        if scenario.payload_kind == "deka":  # sample (or read from the cache) before any point runs
            deka = deka_payload(scenario, checked)
            timing["generation"] = deka.generation["wall_s"]
        t_points = time.perf_counter()
        from dekasim.progress import progress_bar

        runner = make_executor(executor or scenario.executor, address or scenario.ray_address, num_cpus)
        bar = progress_bar(len(points), scenario.name, initial=len(points) - len(pending), enabled=progress,
                           unit="point")
        try:
            for row in runner.map_unordered(evaluate_point, ((scenario, p) for p in pending)):
                store.append(row)
                if on_row:
                    on_row(row)
                bar.set_postfix_str(f"{row['codec']} {row['tdl_profile']} {row['delay_spread_ns']:g} ns "
                                    f"{row['snr_db']:g} dB", refresh=False)
                bar.update(1)
        finally:
            bar.close()
            runner.close()
        timing["points"] = time.perf_counter() - t_points
        report = None
        if deka is not None:
            from dekasim.deka.report import read_deka_report, write_deka_report

            t = time.perf_counter()
            report = read_deka_report(store.dir, scenario.hash())  # the report is a pure function of the scenario
            if report is None:
                report = write_deka_report(store.dir, deka, dict(scenario.downlink), scenario.conditions()[0],
                                           scenario.grid, scenario.csi[0], scenario.carrier_frequency_hz,
                                           scenario.seed, bandwidth_ratios=scenario.bandwidth_ratio,
                                           scenario_hash=scenario.hash(), rows=store.rows(),
                                           domain=scenario.channel_domain)
            timing["report"] = time.perf_counter() - t
    except BaseException:
        store.abandon()  # no row written by this run: the directory as it was found (else the same as close)
        raise
    finally:
        store.close()
    figures: list[Path] = []
    if plots:
        t = time.perf_counter()
        figures = draw_figures(store.dir, x="ebno_db" if scenario.ebno_db else "snr_db")
        timing["plots"] = time.perf_counter() - t
    rows = store.rows()
    new_ids = {p.point_id for p in pending}
    for part in ("codec", "channel", "metrics"):
        timing[part] = sum((r.get("timing_s") or {}).get(part, 0.0) for r in rows if r["point_id"] in new_ids)
    return RunResult(store.dir, rows, len(points) - len(pending), figures,
                     None if deka is None else dict(deka.generation), report,
                     {k: round(v, 3) for k, v in timing.items()})


def draw_figures(run_dir: Path, x: str = "snr_db") -> list[Path]:
    """Figures of one run directory over ``x`` (``"snr_db"`` or, for an Eb/N0 sweep, ``"ebno_db"``); a plotting
    failure is logged, never loses the results."""
    try:
        from dekasim.plots import plot_run
    except ImportError:  # plots module not available
        return []
    try:
        return list(plot_run([run_dir], run_dir, x=x))
    except Exception as exc:  # noqa: BLE001 - results are safe on disk; report and go on
        log.error("drawing figures into %s failed: %s (results are intact; retry with `dekasim plot %s`)",
                  run_dir, exc, run_dir)
        return []
