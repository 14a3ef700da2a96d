"""plait: operators."""
