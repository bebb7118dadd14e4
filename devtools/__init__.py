"""Development-only tools (never deployed): Azurite launcher, the demo, the benchmark."""
