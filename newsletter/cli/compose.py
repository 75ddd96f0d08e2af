"""Commands of the compose area (filled in by its feature)."""

import click

commands: list[click.Command] = []
