"""(filled by its owner)."""
