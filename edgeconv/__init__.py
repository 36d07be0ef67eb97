"""edgeconv: convert and quantize trained models for edge chips, and prove the result still computes the same thing."""

__version__ = "0.1.0"
