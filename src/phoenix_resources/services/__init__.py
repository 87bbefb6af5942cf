"""Use cases that orchestrate the domain against abstract ports (no driver imports)."""
