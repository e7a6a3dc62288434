"""jaxtrack: adversarial robustness of Siamese visual object trackers in JAX/Flax."""

__version__ = "0.1.0"
