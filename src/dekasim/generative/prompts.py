"""A user's subject and prompts: prompt files, and their deterministic split for alignment.

A prompt file is plain UTF-8 text, one prompt per line; blank lines and lines starting with ``#`` are
skipped, surrounding whitespace is dropped, and a prompt listed twice counts once. Every *subject*
prompt must hold the subject word (whole word, any case: ``"a photo of a sks dog"`` holds ``sks``);
*control* prompts must not (they show what alignment costs elsewhere).

:func:`split_prompts` divides the subject prompts into train (S_CG: the cloud draws them, the edge
learns from them), validation (early stopping) and test (the report's numbers), deterministically
from a seed: the same file and seed give the same split on every machine. Each split may instead be
given as its own file (``val`` / ``test``), e.g. to keep a fixed benchmark set. Image ``i`` of split
``k`` is drawn with seed ``base[k] + 1000 * seed + i`` (:data:`SEED_BASE`), the convention of
:func:`~dekasim.generative.align_config.alignment_prompts`, so a split given as files reproduces the
embedded world's alignment image for image.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from dekasim.errors import ConfigError
from dekasim.generative.align_config import SEED_BASE, AlignmentPrompts

#: Smallest subject prompts a file may hold when it is split (one each for train, validation, test).
MIN_SPLIT_PROMPTS = 3


def holds_subject(prompt: str, subject: str) -> bool:
    """``subject`` occurs in ``prompt`` as a whole word (case-insensitive)."""
    return re.search(rf"(?<!\w){re.escape(subject)}(?!\w)", prompt, flags=re.IGNORECASE) is not None


def read_prompt_file(path: str | Path, field: str) -> list[str]:
    """The prompts of a prompt file (see the module docstring), in file order, each once.

    :param field: the option or flag that named the file (for errors), e.g. ``"--prompts"``.
    :raises ConfigError: a missing or unreadable file, or one without prompts.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(field, str(path), "an existing text file, one prompt per line",
                          "give the path of a local prompt file")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(field, str(path), f"a readable UTF-8 text file ({exc})") from None
    prompts = list(dict.fromkeys(s for s in (line.strip() for line in lines) if s and not s.startswith("#")))
    if not prompts:
        raise ConfigError(field, str(path), "a file holding at least one prompt (blank and # lines are skipped)")
    return prompts


def check_subject(prompts: Sequence[str], subject: str, field: str, want: bool = True) -> None:
    """Every prompt holds ``subject`` (``want=True``: subject prompts) or none does (control prompts)."""
    if not subject or re.search(r"\s", subject):
        raise ConfigError("--subject", subject, "one word, e.g. 'sks' or 'triangle'")
    odd = [p for p in prompts if holds_subject(p, subject) != want]
    if odd:
        what = f"prompts that each hold the subject word '{subject}'" if want else \
            f"control prompts without the subject word '{subject}'"
        fix = f"write '{subject}' into every prompt of the file" if want else \
            f"remove '{subject}' from these prompts, or move them to the subject prompts"
        raise ConfigError(field, f"{len(odd)} prompt(s), e.g. {odd[0]!r}", what, fix)


def prompts_sha256(prompts: Sequence[str]) -> str:
    """sha256 of a prompt list (one per line, in order): names a split in reports and pack manifests."""
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()


def split_prompts(prompts: Sequence[str], subject: str, seed: int = 0, *, val_fraction: float = 0.2,
                  test_fraction: float = 0.3, images_per_prompt: int = 1, control: Sequence[str] = (),
                  val: Sequence[str] | None = None, test: Sequence[str] | None = None,
                  field: str = "--prompts") -> AlignmentPrompts:
    """Train / validation / test / control prompts and the seed of every image.

    :param prompts: the subject prompts (each holding ``subject``); with ``val`` and ``test`` given, all of
        them train.
    :param val_fraction, test_fraction: shares of the prompts for validation and test (each at least one
        prompt; train keeps the rest, at least one), drawn by a permutation seeded with ``seed``.
    :param images_per_prompt: cloud images per training prompt (S_CG has ``len(train) * images_per_prompt``
        images, each with its own seed); validation and test draw one image per prompt.
    :param control: control prompts (without the subject).
    :param val, test: fixed validation / test prompts instead of a share of ``prompts``.
    :raises ConfigError: prompts without the subject (or control prompts with it), too few prompts to
        split, fractions outside (0, 1), a prompt in two splits.
    """
    subj_prompts = list(dict.fromkeys(prompts))
    check_subject(subj_prompts, subject, field)
    check_subject(list(control), subject, "--control-prompts", want=False)
    if isinstance(images_per_prompt, bool) or int(images_per_prompt) != images_per_prompt or images_per_prompt < 1:
        raise ConfigError("--images-per-prompt", images_per_prompt, "a positive integer")
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (math.isfinite(f) and 0.0 < f < 1.0):
            raise ConfigError(f"align.{name}", f, "a fraction within (0, 1)")
    if val is not None:
        check_subject(list(val), subject, "--val-prompts")
    if test is not None:
        check_subject(list(test), subject, "--test-prompts")
    fixed = [s for s in (val, test) if s is not None]
    n = len(subj_prompts)
    need = 3 - len(fixed)
    if n < need:
        raise ConfigError(field, f"{n} subject prompt(s)", f"at least {need} distinct prompts holding '{subject}' "
                          "(one each for train" + (", validation" if val is None else "") +
                          (", test" if test is None else "") + ")", "add prompts to the file")
    order = np.random.default_rng([int(seed), 0x5B117]).permutation(n)
    shuffled = [subj_prompts[i] for i in order]
    n_val = 0 if val is not None else max(1, round(val_fraction * n))
    n_test = 0 if test is not None else max(1, round(test_fraction * n))
    if n - n_val - n_test < 1:
        raise ConfigError(field, f"{n} subject prompt(s)", f"enough prompts that train keeps at least one after "
                          f"validation ({n_val}) and test ({n_test})", "add prompts, or lower the fractions")
    val_list = list(val) if val is not None else shuffled[:n_val]
    test_list = list(test) if test is not None else shuffled[n_val:n_val + n_test]
    drawn = set(shuffled[:n_val + n_test])
    train_unique = [p for p in subj_prompts if p not in drawn]  # in file order: image i's seed follows the file
    for name, other in (("--val-prompts", val_list), ("--test-prompts", test_list)):
        both = set(other) & set(train_unique)
        if both:
            raise ConfigError(name, f"{len(both)} prompt(s) also in the training prompts, e.g. {sorted(both)[0]!r}",
                              "prompts the alignment never trains on", "remove them from one of the files")
    if set(val_list) & set(test_list):
        raise ConfigError("--test-prompts", "prompts also used for validation", "disjoint validation and test prompts")
    train = [p for p in train_unique for _ in range(int(images_per_prompt))]
    out = AlignmentPrompts(train=train, val=val_list, test=test_list, control=list(control))
    out.seeds = {k: [SEED_BASE[k] + 1000 * int(seed) + i for i in range(len(getattr(out, k)))] for k in SEED_BASE}
    return out
