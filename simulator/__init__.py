"""Stand-in for the preschool and primary/secondary registries (registry-api.md)."""
