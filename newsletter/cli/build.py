"""Commands of the build area (filled in by its feature)."""

import click

commands: list[click.Command] = []
