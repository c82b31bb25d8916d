"""Viewing events: simulation, validation, aggregation."""
