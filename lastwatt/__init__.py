"""lastwatt package."""
