"""Operational figures about the platform itself, read from the lake (what Prometheus scrapes)."""
