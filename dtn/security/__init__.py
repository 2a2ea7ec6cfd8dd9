"""dtn.security (see docs/architecture.md)."""
