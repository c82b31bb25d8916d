"""Thin Dagster assets by domain; algorithms live in models/."""
