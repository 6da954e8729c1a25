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


#: Floating-point precisions of the neural networks that only *run* (sampling, image encoders): half
#: precision where a GPU makes it pay. Training and the channel stay in float32.
DTYPES = ("float32", "float16", "bfloat16")


def resolve_dtype(spec: str, field: str = "--dtype"):
    """The ``torch.dtype`` of a precision setting of :data:`DTYPES`.

    :raises ConfigError: (naming ``field``) an unknown setting.
    """
    import torch

    if str(spec) not in DTYPES:
        raise ConfigError(field, spec, f"one of {list(DTYPES)}", "float16 or bfloat16 for sampling on a GPU")
    return getattr(torch, str(spec))
