"""The llama-compress runtime: one lean LLaMA, a linear seam, and an engine around it."""

__version__ = "0.1.0"
