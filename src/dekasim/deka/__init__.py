"""DeKA-g, the system: the composition of :mod:`dekasim.generative` and :mod:`dekasim.codecs`.

cloud prompt -> aligned edge (pack: metaword + G-LoRA) -> latents -> CALA-JSCC (pack: bank + gate,
base pinned by sha256) -> OFDM/TDL -> decoder -> image; and the pack itself over the downlink.
"""
