"""Recommenders, their metrics and their MLflow packaging."""
