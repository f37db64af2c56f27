"""Built-in volume drivers, one per file; loaded by the same registry as third-party ones."""
