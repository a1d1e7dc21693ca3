"""Where user input becomes a checked `TrajectoryConfig`: the presets resolved against the registries, and the
command-line options both CLIs are built from (`option`, `recipe`, `parsing`, `resolve`)."""
