"""Compiled CPU kernels of the runtime: the safe build helper, CPU flag checks, and the decode GEMV kernels."""
