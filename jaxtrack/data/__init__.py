"""jaxtrack.data."""
