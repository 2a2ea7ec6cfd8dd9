"""Running networks of real node and emulator processes on 127.0.0.1 (demo, tests, CI)."""
