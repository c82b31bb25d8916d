"""Public research data sets, imported into their own lake namespace (`<lake_root>/datasets/...`).

They are read from files that pip packages ship and never committed: their licences forbid
redistribution, and the platform's own tables (models.lake.schemas) must not mix with them.
"""
