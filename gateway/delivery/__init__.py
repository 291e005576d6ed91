"""Delivery: the engine that claims due deliveries and records their attempts (`engine`), one
attempt over the wire (`attempt`, through the shared `client`), when to try again (`retry`),
backing off a failing destination (`breaker`) and where deliveries may go (`egress`).

This package knows no vendor: what a destination sends and what its answers mean come from the
destination interface (gateway/destinations/base.py). Kept empty so that importing one module
(config.py imports `egress`) does not import them all.
"""
