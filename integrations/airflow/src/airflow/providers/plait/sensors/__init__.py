"""plait: sensors."""
