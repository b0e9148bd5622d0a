"""The package version, in one place (io writes it into every model file)."""
__version__ = "0.1.0"
