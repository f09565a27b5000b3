"""soundlm: audio language modeling (codecs, semantic tokens, AudioLM, AudioPaLM)."""

__version__ = "0.1.0"
