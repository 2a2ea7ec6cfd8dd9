"""dtn.agent (see docs/architecture.md)."""
