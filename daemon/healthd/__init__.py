"""healthd: a health-check daemon."""

__version__ = "0.1.0"
