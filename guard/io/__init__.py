"""Files, not models: data loaders, fetching pinned wheels, artifact folders with checksums."""
