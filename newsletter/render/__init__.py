"""Rendering: an issue compiled once into HTML, text and web version with per-recipient slots.

    from newsletter.render.compile import compile_issue      # Issue, Config -> CompiledIssue

Modules: `compile` (`compile_issue`), `compiled` (`CompiledIssue`, `RenderedEmail`), `fill`
(`Fill`: literal pieces and per-recipient slots), `urlslots`, `theme`, `markdown`, `html`.
The package imports nothing itself: a caller that needs only `Fill` does not load MJML,
premailer and lxml.
"""
