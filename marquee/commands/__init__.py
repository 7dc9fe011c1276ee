"""Sub-commands owned by the platform core (data, registry, demo)."""
