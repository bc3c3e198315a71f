"""medical-assets."""
