"""Monitoring the served models: drift of their inputs and outputs, and how well they rank now."""
