"""`newsletter serve`: the public side (unsubscribe, sign-up with double opt-in, web versions).

`app` holds the endpoints, `guard` the rules every request passes (only POST changes state,
bounded bodies, anti-CSRF, conditional GET), `ratelimit` the per-client sign-up limit, `server`
uvicorn's settings (slow-client timeouts, token-free logs) and the listening socket.
"""

from newsletter.web.public.app import PublicSite, create_app
from newsletter.web.public.ratelimit import SlidingWindowLimiter
from newsletter.web.public.server import listen, serve, server_config

__all__ = ["PublicSite", "SlidingWindowLimiter", "create_app", "listen", "serve", "server_config"]
