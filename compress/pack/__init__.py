"""`compress pack` / `compress unpack`: lossless packed sparse int8 weights inside an artifact."""
from .artifact import pack_artifact, unpack_artifact

__all__ = ["pack_artifact", "unpack_artifact"]
