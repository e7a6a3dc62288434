"""jaxtrack.attacks."""
