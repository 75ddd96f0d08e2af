"""Commands of the subscribers area (filled in by its feature)."""

import click

commands: list[click.Command] = []
