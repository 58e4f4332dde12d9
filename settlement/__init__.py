"""settlement package."""
