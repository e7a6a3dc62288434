"""Reference implementations for tests and benchmarks (PyTorch twins of the networks).

Importing :mod:`jaxtrack.testing.torch_twins` needs torch, a test-only dependency (``make install-dev``); the rest
of the package never imports this sub-package.
"""
