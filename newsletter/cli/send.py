"""Commands of the send area (filled in by its feature)."""

import click

commands: list[click.Command] = []
