"""newsletter: draft an issue as YAML, preview it as a real email, send it to a list."""

__version__ = "0.1.0"
