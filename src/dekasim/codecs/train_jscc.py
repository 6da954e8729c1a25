"""Moved to :mod:`dekasim.training.jscc`; ``python -m dekasim.codecs.train_jscc`` still works.

This shim forwards the old entry point at run time (``runpy``) rather than importing the trainer, so
the codecs layer never depends on the training layer above it.
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("dekasim.training.jscc", run_name="__main__", alter_sys=True)
