"""dtn.payload (see docs/architecture.md)."""
