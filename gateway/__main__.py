"""`python -m gateway …` is the same as `gateway …`."""

from gateway.cli.main import run

run()
