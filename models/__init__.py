"""Streamlake's library: pure, Dagster-free functions that the assets and the API call."""
