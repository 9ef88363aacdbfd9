"""`python -m kerasdl.serve`."""

from kerasdl.serve.app import cli

cli()
