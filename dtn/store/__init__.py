"""dtn.store (see docs/architecture.md)."""
