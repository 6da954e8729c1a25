"""A user's prompt files and their deterministic split (dekasim.generative.prompts)."""

from __future__ import annotations

import pytest

from dekasim.errors import ConfigError
from dekasim.generative.align_config import SEED_BASE
from dekasim.generative.prompts import holds_subject, read_prompt_file, split_prompts

PROMPTS = [f"a photo of a sks dog number {i}" for i in range(20)]


def test_prompt_file_skips_comments_blanks_and_repeats(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# header\n\n  a sks dog  \na sks cat\na sks dog\n", encoding="utf-8")
    assert read_prompt_file(f, "--prompts") == ["a sks dog", "a sks cat"]
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ConfigError) as info:
        read_prompt_file(tmp_path / "empty.txt", "--prompts")
    assert info.value.field == "--prompts"
    with pytest.raises(ConfigError) as info:
        read_prompt_file(tmp_path / "missing.txt", "--control-prompts")
    assert info.value.field == "--control-prompts"


def test_subject_is_a_whole_word_in_any_case():
    assert holds_subject("A SKS dog", "sks") and holds_subject("sks, on a beach", "sks")
    assert not holds_subject("a sksdog", "sks") and not holds_subject("tasks", "sks")


def test_split_is_deterministic_disjoint_and_covers_every_prompt():
    a = split_prompts(PROMPTS, "sks", seed=3)
    b = split_prompts(list(reversed(PROMPTS))[::-1], "sks", seed=3)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    assert (len(a.val), len(a.test), len(a.train)) == (4, 6, 10)  # 20 % and 30 % of 20
    assert sorted(a.train + a.val + a.test) == sorted(PROMPTS)
    assert not set(a.train) & set(a.val) and not set(a.train) & set(a.test) and not set(a.val) & set(a.test)
    other = split_prompts(PROMPTS, "sks", seed=4)
    assert (other.val, other.test) != (a.val, a.test)  # the seed draws the split


def test_images_per_prompt_repeats_training_prompts_with_their_own_seeds():
    s = split_prompts(PROMPTS[:5], "sks", seed=2, images_per_prompt=3)
    assert len(s.train) == 3 * len(set(s.train)) == 6 and (len(s.val), len(s.test)) == (1, 2)
    assert s.seeds["train"] == [SEED_BASE["train"] + 2000 + i for i in range(len(s.train))]
    assert len(set(s.seeds["train"])) == len(s.train)  # every S_CG image has its own noise


def test_fixed_validation_and_test_files_train_on_the_rest():
    s = split_prompts(PROMPTS[:4], "sks", val=["a sks dog at dusk"], test=["a sks dog at noon", "a sks dog at night"],
                      control=["a photo of a cat"])
    assert sorted(s.train) == sorted(PROMPTS[:4]) and s.val == ["a sks dog at dusk"] and len(s.test) == 2
    assert s.control == ["a photo of a cat"]
    with pytest.raises(ConfigError) as info:
        split_prompts(PROMPTS[:4], "sks", val=[PROMPTS[0]], test=["a sks dog at noon"])
    assert info.value.field == "--val-prompts"


@pytest.mark.parametrize("prompts, kwargs, field", [
    (["a sks dog", "a red dog", "a sks cat"], {}, "--prompts"),               # a prompt without the subject
    (["a sks dog", "a sks cat"], {}, "--prompts"),                            # too few to split
    (PROMPTS, {"control": ["a sks cat"]}, "--control-prompts"),               # the subject in a control prompt
    (PROMPTS, {"images_per_prompt": 0}, "--images-per-prompt"),
    (PROMPTS, {"val_fraction": 1.5}, "align.val_fraction"),
])
def test_bad_prompts_name_their_flag(prompts, kwargs, field):
    with pytest.raises(ConfigError) as info:
        split_prompts(prompts, "sks", **kwargs)
    assert info.value.field == field and info.value.expected


def test_the_worlds_split_as_files_is_the_worlds_alignment_image_for_image():
    """The generic path given the embedded world's prompt sets as files draws the same prompts with the same
    seeds, and the world's feature encoder behind the image-encoder interface gives the world path's scores."""
    import torch

    from dekasim.generative.align_config import AlignConfig
    from dekasim.generative.align_task import prompt_file_task, world_feature_encoder, world_task
    from dekasim.generative.models import load_model
    from dekasim.generative.world import World

    config = AlignConfig(seed=3)
    world = world_task(load_model("edge"), config)
    p = world.prompts
    generic = prompt_file_task(config, p.train, {"feature": world_feature_encoder()}, val=p.val, test=p.test,
                               control=p.control)
    for k in ("train", "val", "test", "control"):
        assert getattr(generic.prompts, k) == getattr(p, k) and generic.prompts.seeds[k] == p.seeds[k]
    assert generic.val_metric == world.val_metric == "feature_cosine"
    a, b = World().sample(12, seed=1).torch_images(), World(dialect="edge").sample(12, seed=1).torch_images()
    torch.testing.assert_close(torch.as_tensor(generic.score(a, b).per_pair["feature_cosine"]),
                               torch.as_tensor(world.score(a, b).per_pair["feature_cosine"]), rtol=0, atol=1e-6)
