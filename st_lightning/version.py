"""The package version (its own module, so the encoder side can read it without Lightning)."""

__version__ = "0.1.0"
