"""The preview server's parts: build, watch, page state (see newsletter.web.preview)."""
