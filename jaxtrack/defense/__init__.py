"""jaxtrack.defense."""
