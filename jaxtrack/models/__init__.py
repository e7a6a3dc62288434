"""jaxtrack.models."""
