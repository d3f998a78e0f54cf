"""Integer graph: the quantized network as integers and formats, and the numpy reference ops."""

from . import ops
from .graph import OP_ATTRS, WEIGHTED_OPS, IntegerGraph, Node, TensorSpec

__all__ = ["ops", "IntegerGraph", "Node", "TensorSpec", "OP_ATTRS", "WEIGHTED_OPS"]
