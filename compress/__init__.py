"""llama-compress stages: import, anti-outlier W8A8 quantization, sparsity, packing, tensor-parallel cuts."""

__version__ = "0.1.0"
