"""localmesos package."""
