"""jaxtrack.convert."""
