"""ADE configuration package: the rules the engine applies to each input."""

from . import columns

__all__ = ["columns"]
