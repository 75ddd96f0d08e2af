"""The welcome issue (`issues/_welcome.yaml`) the welcome and shared-serve tests write."""

WELCOME = """\
title: Welcome to Test Letter
date: 2026-11-30
subject: "Welcome, {{ subscriber.name | default('reader') }}"
preheader: What to expect from us.
intro: |
  Hello {{ subscriber.name | default("there") }}, thanks for joining.
stories:
  - headline: What you will get
    dek: One short issue each week.
    summary: |
      Every Tuesday, the three stories that matter.
    why_it_matters: |
      The news without the noise.
    sources:
      - title: About Test Letter
        publisher: Test Letter
        url: https://example.org/about
"""
