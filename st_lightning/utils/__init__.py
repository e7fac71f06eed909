"""Small helpers, one file per purpose."""
