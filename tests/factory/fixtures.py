"""pytest fixtures over the channel factory (filled in by the factory work)."""
