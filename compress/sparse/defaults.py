"""Defaults of the sparse stage that the CLI shows in --help (kept free of torch imports)."""

RECONSTRUCT_EPOCHS = 3  # defaults, measured on SmolLM2-135M (README: sparse section)
RECONSTRUCT_LR = 1e-3
