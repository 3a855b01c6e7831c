"""The package version, in one place (leaf modules import it from here, never the root)."""

__version__ = "0.1.0"
