"""`python -m gateway …` is the same as `gateway …`."""

from gateway.cli import run

run()
