"""Catalog search: BM25 and sentence embeddings over the catalog, fused by rank."""
