"""jaxtrack: adversarial robustness of Siamese visual object trackers in JAX/Flax.

Importing the package changes no global state; entry points set XLA flags and the compilation cache with
:func:`jaxtrack.runtime.configure`.
"""

__version__ = "0.1.0"
