"""Tensor parallelism: the slicing plan, the TP binder, process groups from torchrun, cut directories."""
from .dist import TPContext, init_from_env, is_main_process, pin_cpu
from .plan import TPPlan

__all__ = ["TPContext", "TPPlan", "init_from_env", "is_main_process", "pin_cpu"]
