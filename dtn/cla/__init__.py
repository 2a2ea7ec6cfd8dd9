"""dtn.cla (see docs/architecture.md)."""
