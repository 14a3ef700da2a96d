"""plait: triggers."""
