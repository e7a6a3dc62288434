"""jaxtrack.losses."""
