"""Data: the Occupancy Networks on-disk format, the built-in procedural dataset, loaders."""
