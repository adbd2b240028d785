"""Sparse int8 in the runtime: the packed format (format.py), the packed-sparse matmul kernel (kernel.py)
and the linear that runs from the packed form (linear.py)."""
