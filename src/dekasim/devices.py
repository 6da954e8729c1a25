"""Where tensors live: the ``--device`` / ``device`` setting of every stage (``cpu``, ``cuda``, ``auto``)."""

from __future__ import annotations

from dekasim.errors import ConfigError

#: Accepted device settings: ``"auto"`` is CUDA when torch sees a GPU, else the CPU.
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(spec: str, field: str = "--device") -> str:
    """``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) for a setting of :data:`DEVICES`.

    :raises ConfigError: (naming ``field``) an unknown setting, or ``cuda`` on a machine whose torch sees no GPU.
    """
    import torch

    text = str(spec)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return text
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(field, text, "a machine with a CUDA GPU visible to torch",
                              "use auto (the GPU when present, else the CPU) or cpu")
        return text
    raise ConfigError(field, text, f"one of {list(DEVICES)} (or cuda:N)")
