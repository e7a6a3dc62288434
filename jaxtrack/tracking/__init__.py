"""jaxtrack.tracking."""
