"""jaxdr: interpretable channel importance and dynamic inference for CNNs in JAX."""

__version__ = "0.1.0"
