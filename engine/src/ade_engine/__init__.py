"""ADE engine: normalizes messy tabular inputs using the rules of an ade_config package."""

__version__ = "0.1.0"
