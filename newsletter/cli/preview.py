"""Commands of the preview area (filled in by its feature)."""

import click

commands: list[click.Command] = []
