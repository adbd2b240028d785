"""W8A8 in the runtime: the artifact format (artifact.py), int8 linear modules (linear.py), and the
QuantBinder that builds them from an artifact's tensors (binder.py)."""
