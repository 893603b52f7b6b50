"""Command-line tools: `tiktok-organic-authorize`, `make demo`, `make dev`."""
