"""plait: hooks."""
