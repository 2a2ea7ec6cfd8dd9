"""dtn.fec (see docs/architecture.md)."""
