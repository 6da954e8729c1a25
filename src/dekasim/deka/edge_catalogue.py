"""The catalogue of subjects an edge serves, each with its knowledge pack and measured consistencies, and
the popularity law of requests over it (used by :mod:`dekasim.deka.edge_users`).

**Catalogue file** (JSON)::

    {"subjects": [
      {"subject": "triangle",                      # the caption word the pack aligns
       "pack": "path/to/pack_dir",                 # a saved pack; relative paths are from the file's folder
       "consistency_aligned": 0.92,                # end-to-end consistency with the aligned edge
       "consistency_unaligned": 0.32,              # ... and with the unaligned edge, same metric and prompts
       "metric": "feature_cosine",                 # the metric of both (one metric for the whole file)
       "source": "where the two numbers come from"}
    ]}

Other top-level keys (``"what"``, ``"note"``) are kept as text. Subjects whose ``pack`` names the same
directory share one pack (one cache entry, one adapter at the edge). The shipped default,
``dekasim/deka/data/edge_catalogue.json`` (:data:`DEFAULT_CATALOGUE`), lists the two shipped per-subject packs
(``pack-triangle``, ``pack-purple``), each with its test consistency and the unaligned edge's on the same 128
test prompts (their ``SHIPPED.json`` and the reports of the commands they record).

**Catalogue size.** The embedded world has only two misaligned subjects. :func:`expand_catalogue` models a
catalogue of ``N`` subjects by cycling the real ones: subject ``i >= R`` (``R`` real subjects) is a
*modelled copy* of real subject ``i mod R``, named ``"<subject>~<i // R>"``: its pack bytes and
consistencies are the real subject's, and it is a distinct pack (a distinct cache entry and adapter).

**Popularity.** Subject of rank ``k = 1..N`` (catalogue order) is requested with probability
``p_k = k^-s / sum_j j^-s`` (Zipf with exponent ``s``; ``s = 0`` is uniform): :func:`popularity`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dekasim.deka.downlink import pack_bytes
from dekasim.errors import ConfigError
from dekasim.generative.pack import MANIFEST_NAME, pack_size_bytes, read_manifest

#: The shipped default catalogue (the per-subject packs of ``triangle`` and ``purple``).
DEFAULT_CATALOGUE = Path(__file__).parent / "data" / "edge_catalogue.json"
#: Keys every catalogue subject must have.
SUBJECT_KEYS = ("subject", "pack", "consistency_aligned", "consistency_unaligned", "metric", "source")


def metric_range(metric: str) -> tuple[float, float]:
    """The bounds of a consistency metric: ``(-1, 1)`` for a cosine (``*_cosine``), else ``(0, 1)``
    (agreement fractions)."""
    return (-1.0, 1.0) if metric.endswith("cosine") else (0.0, 1.0)


@dataclass(frozen=True)
class PackInfo:
    """A real pack on disk, as the edge simulation needs it.

    :param directory: the pack directory.
    :param size_bytes: :func:`~dekasim.generative.pack.pack_size_bytes` (manifest + files) [B].
    :param bank_bytes: size of its ``cala_bank*.safetensors`` file [B]; 0 for a pack without a CALA bank.
    :param sha256: sha256 (hex) of its byte stream (:func:`dekasim.deka.downlink.pack_bytes`).
    """

    directory: Path
    size_bytes: int
    bank_bytes: int
    sha256: str


@dataclass(frozen=True)
class Subject:
    """One catalogue subject.

    :param subject: its name (a modelled copy: ``"triangle~1"``).
    :param pack: the real pack whose bytes it uses.
    :param pack_key: its pack's identity at the edge: ``"pack<j>#<copy>"``, ``j`` the real pack's index among the
        catalogue's distinct pack directories, ``copy`` 0 for a real subject (subjects sharing a key share one
        cache entry and one adapter).
    :param consistency_aligned: per-image consistency with the aligned edge (mean over test prompts).
    :param consistency_unaligned: the same with the unaligned edge.
    :param metric: the metric of both.
    :param source: where they come from.
    :param copy_of: the real subject a modelled copy repeats, else None.
    """

    subject: str
    pack: PackInfo
    pack_key: str
    consistency_aligned: float
    consistency_unaligned: float
    metric: str
    source: str
    copy_of: str | None = None


def pack_info(directory: str | Path) -> PackInfo:
    """:class:`PackInfo` of a saved pack; ConfigError (field ``pack``) if it is not a complete pack."""
    d = Path(directory)
    if not (d / MANIFEST_NAME).is_file():
        raise ConfigError("pack", str(d), f"a knowledge pack directory holding {MANIFEST_NAME}",
                          "point the catalogue's 'pack' at a `dekasim align` pack directory")
    size = pack_size_bytes(d)
    bank = [f["name"] for f in read_manifest(d).get("files", []) if f["name"].startswith("cala_bank")]
    bank_bytes = sum((d / name).stat().st_size for name in bank)
    return PackInfo(d, size, bank_bytes, hashlib.sha256(pack_bytes(d)).hexdigest())


def _number(entry: dict[str, Any], key: str, where: str, lo: float, hi: float, source: str) -> float:
    v = entry.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}", v, f"a number in [{lo:g}, {hi:g}] (the metric's range)",
                          "copy it from the alignment report of the pack", source)
    return float(v)


def load_catalogue(path: str | Path | None = None) -> tuple[list[Subject], dict[str, Any]]:
    """Read and check a catalogue file (schema: the module doc); ``None`` reads :data:`DEFAULT_CATALOGUE`.

    :return: ``(real subjects in file order, the file's other top-level keys)``.
    :raises ConfigError: naming the key (``catalogue.subjects[i].pack`` ...), the value and a fix, located in
        the file: a missing file or key, a pack directory that is not a complete pack, a consistency outside
        its metric's range, two metrics, a repeated subject.
    """
    p = Path(path) if path is not None else DEFAULT_CATALOGUE
    src = str(p)
    if not p.is_file():
        raise ConfigError("catalogue", src, "a JSON catalogue file", "see docs/edge_users.md for its schema, or "
                          "leave --catalogue out for the shipped one")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError("catalogue", src, f"valid JSON ({e.msg} at line {e.lineno})") from None
    rows = doc.get("subjects") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ConfigError("catalogue.subjects", rows if rows is None else type(rows).__name__,
                          "a non-empty list of subjects", 'write {"subjects": [{"subject": ..., "pack": ...}]}', src)
    infos: dict[Path, PackInfo] = {}
    out: list[Subject] = []
    metrics: set[str] = set()
    for i, entry in enumerate(rows):
        where = f"catalogue.subjects[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, type(entry).__name__, "an object with keys " + ", ".join(SUBJECT_KEYS), None, src)
        for key in SUBJECT_KEYS:
            if key not in entry:
                raise ConfigError(f"{where}.{key}", None, "present (keys: " + ", ".join(SUBJECT_KEYS) + ")",
                                  "add it", src)
        for key in ("subject", "pack", "metric", "source"):
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise ConfigError(f"{where}.{key}", entry[key], "a non-empty string", None, src)
        metric = entry["metric"]
        metrics.add(metric)
        if len(metrics) > 1:
            raise ConfigError(f"{where}.metric", metric, f"the metric of the other subjects ({sorted(metrics)[0]!r})",
                              "give every subject's consistencies in one metric", src)
        lo, hi = metric_range(metric)
        aligned = _number(entry, "consistency_aligned", where, lo, hi, src)
        unaligned = _number(entry, "consistency_unaligned", where, lo, hi, src)
        d = Path(entry["pack"])
        d = (d if d.is_absolute() else p.parent / d).resolve()
        if d not in infos:
            try:
                infos[d] = pack_info(d)
            except ConfigError as e:
                raise ConfigError(f"{where}.pack", entry["pack"], f"{e.expected} (resolved: {d})",
                                  "fix the path (relative paths are from the catalogue file's folder)", src) from None
        if any(s.subject == entry["subject"] for s in out):
            raise ConfigError(f"{where}.subject", entry["subject"], "a subject not listed before", None, src)
        key = f"pack{list(infos).index(d)}#0"
        out.append(Subject(entry["subject"], infos[d], key, aligned, unaligned, metric, entry["source"]))
    return out, {k: v for k, v in doc.items() if k != "subjects"}


def expand_catalogue(real: list[Subject], size: int | None) -> list[Subject]:
    """``size`` subjects: the real ones, then modelled copies cycling them (see the module doc); ``None``:
    the real ones. A size below the number of real subjects keeps the first ``size``.

    :raises ConfigError: naming ``catalogue_size`` for a size < 1.
    """
    if size is None:
        return list(real)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError("catalogue_size", size, "an integer >= 1", "e.g. --catalogue-size 16")
    out = []
    for i in range(size):
        s = real[i % len(real)]
        copy = i // len(real)
        if copy == 0:
            out.append(s)
        else:
            out.append(Subject(f"{s.subject}~{copy}", s.pack, f"{s.pack_key.rsplit('#', 1)[0]}#{copy}",
                               s.consistency_aligned, s.consistency_unaligned, s.metric,
                               f"modelled copy of '{s.subject}' (its pack bytes and consistencies); {s.source}",
                               copy_of=s.subject))
    return out


def popularity(n: int, zipf_s: float) -> np.ndarray:
    """Request probabilities ``[n]`` of ranks ``1..n``: ``p_k ∝ k^-zipf_s`` (``zipf_s = 0``: uniform).

    :raises ConfigError: naming ``zipf_s`` for a negative or non-finite exponent.
    """
    if isinstance(zipf_s, bool) or not isinstance(zipf_s, (int, float)) or not math.isfinite(zipf_s) or zipf_s < 0:
        raise ConfigError("zipf_s", zipf_s, "a finite Zipf exponent >= 0 (0: uniform)", "e.g. --zipf 0,0.8,1.2")
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(zipf_s)
    return w / w.sum()

