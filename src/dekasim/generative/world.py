"""The embedded default world: procedural captioned images with exact ground truth.

One scene is one object on a plain background, fully described by five discrete attributes::

    a small red circle at the top left on a navy background
      ^size ^colour ^shape  ^position         ^background

rendered at 32x32 RGB by supersampled (anti-aliased) coverage of an analytic shape, with small
seeded nuisances (position +-1 px, radius +-6 %, colour +-6/255 per channel) so that no two renders
of one caption are identical. Everything is deterministic from a seed and vectorised in numpy
(tens of thousands of images per second on one core).

The default vocabulary (:class:`WorldSpec`) gives 6 shapes x 6 colours x 3 sizes x 9 positions x 4
backgrounds = 3888 captions; :class:`World` splits them into training captions and held-out
captions never seen in training (:meth:`World.split`).

A *dialect* is a rendering convention: it maps a caption word to a different rendered value (a
shape or colour the world knows under another name). The edge model of the default world is trained
on the ``"edge"`` dialect (``triangle`` drawn point-down, ``purple`` drawn magenta), so it reads those
prompts differently from the cloud: the designed misalignment that MAKD has to repair. Captions never
name the dialect-only values (``triangle_down``, ``magenta``); the checker does recognise them.

Geometry: every shape is defined in object units by its *circumradius* ``r`` (all points within
``r`` of the centre, so extents along each axis are at most ``r``) and is centred on its centroid,
so the alpha-weighted centroid of a render is its position. Coordinates are in pixels, origin at the
top-left corner of the image, y pointing down, pixel ``(i, j)`` covering ``[j, j+1] x [i, i+1]``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field, fields
from typing import Iterable, Mapping, Sequence

import numpy as np

from dekasim.errors import ConfigError

#: Shapes the renderer knows (caption vocabulary plus dialect-only renders) and their area in units
#: of ``r**2`` (used by the checker to turn an area into a radius).
SHAPE_AREA: dict[str, float] = {
    "circle": math.pi,
    "square": (2 * 0.8) ** 2,
    "triangle": 3 * math.sqrt(3) / 4,
    "triangle_down": 3 * math.sqrt(3) / 4,
    "diamond": 2.0,
    "cross": 2 * (2 * 0.3 * 2) - (2 * 0.3) ** 2,
    "star": 5 * 0.45 * math.sin(math.radians(36)),  # 10 triangles (outer 1, inner 0.45, 36 deg apart)
}
_STAR_INNER = 0.45
_CROSS_HALF_WIDTH = 0.3
_SQUARE_HALF_SIDE = 0.8

#: Colours the renderer knows, sRGB 0..255. Object and background palettes are disjoint so that no
#: caption asks for an invisible object.
COLOURS_RGB: dict[str, tuple[int, int, int]] = {
    # objects
    "red": (220, 40, 40),
    "orange": (245, 145, 30),
    "yellow": (235, 215, 50),
    "green": (50, 170, 70),
    "blue": (45, 90, 225),
    "purple": (140, 70, 200),
    "magenta": (230, 60, 185),  # dialect-only (edge "purple")
    # backgrounds
    "black": (20, 20, 20),
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "navy": (25, 35, 95),
}

#: Position words and their centre in units of the image side (x right, y down).
POSITIONS_XY: dict[str, tuple[float, float]] = {
    "top left": (10 / 32, 10 / 32), "top": (16 / 32, 10 / 32), "top right": (22 / 32, 10 / 32),
    "left": (10 / 32, 16 / 32), "center": (16 / 32, 16 / 32), "right": (22 / 32, 16 / 32),
    "bottom left": (10 / 32, 22 / 32), "bottom": (16 / 32, 22 / 32), "bottom right": (22 / 32, 22 / 32),
}

#: Size words and their circumradius in units of the image side (4, 6 and 8.5 px at 32 px).
SIZES_R: dict[str, float] = {"small": 4 / 32, "medium": 6 / 32, "large": 8.5 / 32}

#: Rendering conventions: caption word -> rendered value, per attribute.
DIALECTS: dict[str, dict[str, dict[str, str]]] = {
    "standard": {},
    "edge": {"shape": {"triangle": "triangle_down"}, "colour": {"purple": "magenta"}},
}

ATTRIBUTE_NAMES = ("shape", "colour", "size", "position", "background")


@dataclass(frozen=True, order=True)
class Attributes:
    """The discrete ground truth of one scene (caption words, or rendered values for a checker)."""

    shape: str
    colour: str
    size: str
    position: str
    background: str

    def caption(self) -> str:
        """The scene's caption, e.g. ``"a small red circle at the top left on a navy background"``."""
        return (f"a {self.size} {self.colour} {self.shape} at the {self.position} "
                f"on a {self.background} background")

    def as_dict(self) -> dict[str, str]:
        return {n: getattr(self, n) for n in ATTRIBUTE_NAMES}


def parse_caption(caption: str) -> Attributes:
    """Inverse of :meth:`Attributes.caption` (words are not checked against a vocabulary).

    :raises ConfigError: if ``caption`` does not follow the world's template.
    """
    words = caption.strip().split()
    try:
        at = words.index("at")
        on = len(words) - 1 - words[::-1].index("on")
        if words[0] != "a" or words[at + 1] != "the" or words[on + 1] != "a" or words[-1] != "background" \
                or at != 4 or on + 4 != len(words):
            raise ValueError
        return Attributes(shape=words[3], colour=words[2], size=words[1],
                          position=" ".join(words[at + 2:on]), background=words[on + 2])
    except (ValueError, IndexError):
        raise ConfigError("caption", caption, "'a SIZE COLOUR SHAPE at the POSITION on a BACKGROUND background'",
                          "build captions with Attributes(...).caption()") from None


@dataclass(frozen=True)
class WorldSpec:
    """The world's vocabulary and rendering settings.

    :param shapes: caption words for shapes (each must be known to the renderer: :data:`SHAPE_AREA`).
    :param colours: caption words for colours (:data:`COLOURS_RGB`).
    :param sizes: caption words for sizes (:data:`SIZES_R`).
    :param positions: caption words for positions (:data:`POSITIONS_XY`).
    :param backgrounds: caption words for backgrounds (colours of :data:`COLOURS_RGB`).
    :param resolution_px: image side in pixels.
    :param supersample: samples per pixel side for anti-aliasing (4 -> 16 coverage samples a pixel).
    :param position_jitter_px: uniform jitter of the object centre, +- pixels (at 32 px; scales).
    :param radius_jitter: uniform relative jitter of the radius, +- fraction.
    :param colour_jitter: uniform jitter of each RGB channel of object and background, +- levels of 255.
    """

    shapes: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
    colours: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple")
    sizes: tuple[str, ...] = ("small", "medium", "large")
    positions: tuple[str, ...] = tuple(POSITIONS_XY)
    backgrounds: tuple[str, ...] = ("black", "white", "gray", "navy")
    resolution_px: int = 32
    supersample: int = 4
    position_jitter_px: float = 1.0
    radius_jitter: float = 0.06
    colour_jitter: float = 6.0

    def __post_init__(self) -> None:
        known = {"shapes": SHAPE_AREA, "colours": COLOURS_RGB, "sizes": SIZES_R, "positions": POSITIONS_XY,
                 "backgrounds": COLOURS_RGB}
        for name, table in known.items():
            values = getattr(self, name)
            object.__setattr__(self, name, tuple(values))
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"world.{name}", values, "a non-empty tuple of distinct words")
            unknown = [v for v in values if v not in table]
            if unknown:
                raise ConfigError(f"world.{name}", unknown, f"words among {sorted(table)}")
        clash = set(self.colours) & set(self.backgrounds)
        if clash:
            raise ConfigError("world.backgrounds", sorted(clash), "colours not also used for objects",
                              "an object on a background of its own colour is invisible")
        if not 8 <= self.resolution_px <= 512:
            raise ConfigError("world.resolution_px", self.resolution_px, "an image side within [8, 512]")
        if not 1 <= self.supersample <= 16:
            raise ConfigError("world.supersample", self.supersample, "an integer within [1, 16]")

    def values(self, attribute: str) -> tuple[str, ...]:
        """The caption words of one attribute (``"shape"``, ``"colour"``, …)."""
        if attribute not in ATTRIBUTE_NAMES:
            raise ConfigError("attribute", attribute, f"one of {list(ATTRIBUTE_NAMES)}")
        return getattr(self, attribute + "s")

    @property
    def n_combinations(self) -> int:
        return len(self.shapes) * len(self.colours) * len(self.sizes) * len(self.positions) * len(self.backgrounds)

    def combinations(self) -> list[Attributes]:
        """Every caption of the world, in a fixed order."""
        return [Attributes(s, c, z, p, b) for s, c, z, p, b in
                itertools.product(self.shapes, self.colours, self.sizes, self.positions, self.backgrounds)]

    def vocabulary(self) -> list[str]:
        """Every word the captions use (sorted)."""
        words = {"a", "at", "the", "on", "background"}
        for v in itertools.chain(self.shapes, self.colours, self.sizes, self.positions, self.backgrounds):
            words.update(v.split())
        return sorted(words)

    def as_dict(self) -> dict[str, object]:
        return {f.name: (list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple)
                         else getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "WorldSpec":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


# ----------------------------------------------------------------------------------------------
# Rendering


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean inside-test of ``shape`` at object coordinates ``(u, v)`` (units of the circumradius,
    v pointing down)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF_SIDE
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape in ("triangle", "triangle_down"):
        if shape == "triangle_down":
            v = -v
        # circumradius 1, centroid at the origin, apex up: vertices (0,-1), (+-sqrt3/2, 1/2)
        return (v <= 0.5) & (math.sqrt(3) * np.abs(u) <= v + 1.0)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= _CROSS_HALF_WIDTH) & (av <= 1.0)) | ((av <= _CROSS_HALF_WIDTH) & (au <= 1.0))
    if shape == "star":
        # five points, one straight up; fold the angle into [0, 36 deg] from the nearest outer vertex
        theta = np.arctan2(u, -v)  # 0 at "up", clockwise
        sector = math.radians(72)
        phi = np.mod(theta, sector)
        phi = np.minimum(phi, sector - phi)
        rho = np.sqrt(u * u + v * v)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        # edge from outer vertex A=(1,0) to inner vertex B=(ri cos36, ri sin36); inside on the origin side
        bx, by = _STAR_INNER * math.cos(math.radians(36)), _STAR_INNER * math.sin(math.radians(36))
        ex, ey = bx - 1.0, by
        return ex * py - ey * (px - 1.0) >= 0.0  # cross(B - A, p - A) has the origin's sign (+)
    raise ConfigError("shape", shape, f"one of {sorted(SHAPE_AREA)}")


def coverage(shapes: Sequence[str], cx: np.ndarray, cy: np.ndarray, r: np.ndarray, resolution_px: int,
             supersample: int = 4, chunk: int = 256) -> np.ndarray:
    """Anti-aliased coverage (alpha) of objects, ``[N, R, R]`` float32 in [0, 1].

    :param shapes: ``N`` rendered shape names (keys of :data:`SHAPE_AREA`).
    :param cx, cy: ``[N]`` object centres [px] (image origin top-left, y down).
    :param r: ``[N]`` circumradii [px].
    :param resolution_px: image side R [px].
    :param supersample: samples per pixel side.
    """
    n = len(shapes)
    cx, cy, r = (np.asarray(a, dtype=np.float32).reshape(n) for a in (cx, cy, r))
    res, s = int(resolution_px), int(supersample)
    grid = ((np.arange(res * s, dtype=np.float32) + 0.5) / s)
    out = np.empty((n, res, res), dtype=np.float32)
    names = np.asarray(shapes)
    for shape in sorted(set(shapes)):
        idx = np.nonzero(names == shape)[0]
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            inv = 1.0 / r[sel][:, None, None]
            u = (grid[None, None, :] - cx[sel][:, None, None]) * inv
            v = (grid[None, :, None] - cy[sel][:, None, None]) * inv
            u, v = np.broadcast_arrays(u, v)
            inside = _inside(shape, u, v)
            out[sel] = inside.reshape(len(sel), res, s, res, s).mean(axis=(2, 4), dtype=np.float32)
    return out


def compose(alpha: np.ndarray, fg_rgb: np.ndarray, bg_rgb: np.ndarray) -> np.ndarray:
    """Images ``[N, R, R, 3]`` float32 in [0, 1] from coverage ``[N, R, R]`` and colours ``[N, 3]`` (0..1)."""
    a = alpha[..., None]
    return (bg_rgb[:, None, None, :] * (1.0 - a) + fg_rgb[:, None, None, :] * a).astype(np.float32)


@dataclass(frozen=True)
class Scene:
    """One rendered scene: caption attributes, rendered values and continuous parameters."""

    attributes: Attributes
    rendered: Attributes
    cx_px: float
    cy_px: float
    radius_px: float
    fg_rgb: tuple[float, float, float]
    bg_rgb: tuple[float, float, float]


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(seed)


@dataclass
class Batch:
    """Rendered images and their ground truth.

    :param images: ``[N, R, R, 3]`` float32 in [0, 1] (use :meth:`torch_images` for ``[N, 3, R, R]``).
    :param scenes: per image, caption attributes, rendered values and continuous parameters.
    """

    images: np.ndarray
    scenes: list[Scene] = field(default_factory=list)

    @property
    def attributes(self) -> list[Attributes]:
        return [s.attributes for s in self.scenes]

    @property
    def captions(self) -> list[str]:
        return [s.attributes.caption() for s in self.scenes]

    def torch_images(self):  # -> torch.Tensor
        """Images as a torch tensor ``[N, 3, R, R]`` float32 in [0, 1] (the payload convention)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.images.transpose(0, 3, 1, 2)))

    def uint8(self) -> np.ndarray:
        return np.clip(np.rint(self.images * 255.0), 0, 255).astype(np.uint8)


class World:
    """The procedural captioned-image world.

    :param spec: vocabulary and rendering settings.
    :param dialect: rendering convention, a key of :data:`DIALECTS` (``"standard"`` for the cloud's
        training data and the checker's reference, ``"edge"`` for the edge model's) or a mapping
        ``{"shape": {word: rendered}, "colour": {word: rendered}}``.
    :param split: how held-out captions are chosen: ``"combo"`` holds out ``holdout_fraction`` of all
        full attribute combinations (every single attribute value and every pair of values still
        occurs in training); ``"pairs"`` holds out whole (shape, colour) pairs, one per shape, so that
        the held-out captions bind a shape and a colour that never appear together in training.
    :param holdout_fraction: fraction of captions held out for ``split="combo"``.
    :param split_seed: seed of the split (independent of image seeds).

    >>> w = World()
    >>> b = w.sample(4, seed=0)
    >>> b.images.shape, b.images.dtype.name
    ((4, 32, 32, 3), 'float32')
    >>> len(w.train_combinations) + len(w.heldout_combinations) == w.spec.n_combinations
    True
    """

    def __init__(self, spec: WorldSpec | None = None, dialect: str | Mapping[str, Mapping[str, str]] = "standard",
                 split: str = "combo", holdout_fraction: float = 0.1, split_seed: int = 0) -> None:
        self.spec = spec or WorldSpec()
        if isinstance(dialect, str):
            if dialect not in DIALECTS:
                raise ConfigError("world.dialect", dialect, f"one of {sorted(DIALECTS)} or a mapping")
            self.dialect_name, dialect_map = dialect, DIALECTS[dialect]
        else:
            self.dialect_name, dialect_map = "custom", dialect
        self.dialect = {k: dict(v) for k, v in dialect_map.items()}
        for attr, table in self.dialect.items():
            known = SHAPE_AREA if attr == "shape" else COLOURS_RGB if attr == "colour" else None
            if known is None:
                raise ConfigError("world.dialect", attr, "keys 'shape' and/or 'colour'")
            bad = [v for v in table.values() if v not in known]
            if bad:
                raise ConfigError(f"world.dialect.{attr}", bad, f"rendered values among {sorted(known)}")
        if split not in ("combo", "pairs"):
            raise ConfigError("world.split", split, "'combo' or 'pairs'")
        if not 0.0 < holdout_fraction < 1.0:
            raise ConfigError("world.holdout_fraction", holdout_fraction, "a fraction within (0, 1)")
        self.split_kind, self.holdout_fraction, self.split_seed = split, float(holdout_fraction), int(split_seed)
        self._all = self.spec.combinations()
        held = self._heldout_mask()
        self.train_combinations = [a for a, h in zip(self._all, held) if not h]
        self.heldout_combinations = [a for a, h in zip(self._all, held) if h]

    # -- split ---------------------------------------------------------------------------------
    def _heldout_mask(self) -> list[bool]:
        sp = self.spec
        rng = _rng([self.split_seed, 0x5D11])
        if self.split_kind == "pairs":
            colours = list(rng.permutation(len(sp.colours)))
            pairs = {(s, sp.colours[colours[i % len(colours)]]) for i, s in enumerate(sp.shapes)}
            return [(a.shape, a.colour) in pairs for a in self._all]
        n = len(self._all)
        k = max(1, int(round(self.holdout_fraction * n)))
        held = np.zeros(n, dtype=bool)
        held[rng.permutation(n)[:k]] = True
        return held.tolist()

    def split(self, name: str) -> list[Attributes]:
        """Captions of a split: ``"train"``, ``"heldout"`` or ``"all"``."""
        if name == "train":
            return list(self.train_combinations)
        if name == "heldout":
            return list(self.heldout_combinations)
        if name == "all":
            return list(self._all)
        raise ConfigError("split", name, "'train', 'heldout' or 'all'")

    def fingerprint(self) -> str:
        """A short hash of the spec, dialect and split (recorded beside models trained on this world)."""
        text = repr((self.spec.as_dict(), sorted((k, sorted(v.items())) for k, v in self.dialect.items()),
                     self.split_kind, self.holdout_fraction, self.split_seed))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- rendering -----------------------------------------------------------------------------
    def rendered(self, a: Attributes) -> Attributes:
        """The values this world's dialect actually draws for caption attributes ``a``."""
        return Attributes(shape=self.dialect.get("shape", {}).get(a.shape, a.shape),
                          colour=self.dialect.get("colour", {}).get(a.colour, a.colour),
                          size=a.size, position=a.position, background=a.background)

    def render(self, attributes: Sequence[Attributes], seed: int | Sequence[int] = 0, jitter: bool = True) -> Batch:
        """Render scenes for ``attributes`` (in order), nuisances drawn from ``seed``.

        :param jitter: False renders the nominal scene (no position, radius or colour jitter).
        """
        sp = self.spec
        n, res = len(attributes), sp.resolution_px
        rng = _rng(seed)
        rend = [self.rendered(a) for a in attributes]
        for a in attributes:
            for name in ATTRIBUTE_NAMES:
                vocab = sp.values(name)
                if getattr(a, name) not in vocab:
                    raise ConfigError(f"attributes.{name}", getattr(a, name), f"one of {list(vocab)}")
        pos = np.array([POSITIONS_XY[a.position] for a in attributes], dtype=np.float64).reshape(n, 2) * res
        rad = np.array([SIZES_R[a.size] for a in attributes], dtype=np.float64).reshape(n) * res
        fg = np.array([COLOURS_RGB[a.colour] for a in rend], dtype=np.float64).reshape(n, 3)
        bg = np.array([COLOURS_RGB[a.background] for a in rend], dtype=np.float64).reshape(n, 3)
        if jitter:
            pos = pos + rng.uniform(-1, 1, size=(n, 2)) * sp.position_jitter_px * res / 32.0
            rad = rad * (1.0 + rng.uniform(-1, 1, size=n) * sp.radius_jitter)
            fg = fg + rng.uniform(-1, 1, size=(n, 3)) * sp.colour_jitter
            bg = bg + rng.uniform(-1, 1, size=(n, 3)) * sp.colour_jitter
        fg, bg = np.clip(fg, 0, 255) / 255.0, np.clip(bg, 0, 255) / 255.0
        alpha = coverage([a.shape for a in rend], pos[:, 0], pos[:, 1], rad, res, sp.supersample)
        images = compose(alpha, fg.astype(np.float32), bg.astype(np.float32))
        scenes = [Scene(a, ra, float(pos[i, 0]), float(pos[i, 1]), float(rad[i]), tuple(fg[i]), tuple(bg[i]))
                  for i, (a, ra) in enumerate(zip(attributes, rend))]
        return Batch(images, scenes)

    def sample(self, n: int, seed: int | Sequence[int] = 0, split: str = "train") -> Batch:
        """``n`` random scenes of a split (captions drawn uniformly with replacement), from ``seed``."""
        pool = self.split(split)
        rng = _rng([*np.atleast_1d(seed).tolist(), 0xCA7])
        idx = rng.integers(0, len(pool), size=int(n))
        return self.render([pool[i] for i in idx], seed=[*np.atleast_1d(seed).tolist(), 0x1A6E])

    def images_for(self, captions: Iterable[str], seed: int | Sequence[int] = 0) -> Batch:
        """Render the scenes a list of captions describes."""
        return self.render([parse_caption(c) for c in captions], seed=seed)
