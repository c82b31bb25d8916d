"""Dagster wiring: definitions, jobs, schedules, sensors, resources."""
