"""Scene data: procedural generators and loaders into in-memory tensors."""
from common.data.toy import toy_shapes

__all__ = ["toy_shapes"]
