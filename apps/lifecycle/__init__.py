"""The memory lifecycle: end-of-day digests, consolidation with lineage, namespace merge,
strength and decay (docs/lifecycle.md)."""
