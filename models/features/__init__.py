"""Feature store (Feast) helpers."""
