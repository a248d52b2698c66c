"""Geometry value objects and input parsers shared by all layers (imports only udfkit.errors)."""

from .parse import normalize_dtype, normalize_roi, normalize_shape, parse_roi, parse_size
from .shape import Shape
from .slice import Slice

__all__ = ["Shape", "Slice", "normalize_shape", "normalize_dtype", "parse_size", "parse_roi", "normalize_roi"]
