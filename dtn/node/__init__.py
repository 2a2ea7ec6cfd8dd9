"""dtn.node (see docs/architecture.md)."""
