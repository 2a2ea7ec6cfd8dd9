"""dtn.emulator (see docs/architecture.md)."""
