"""jaxtrack.eval."""
