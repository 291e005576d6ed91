"""Alerts: the gateway tells an operator, once per incident, that something needs them.

settings.py reads routes.yaml's `alerts:` section; conditions.py decides, from what the gateway
sees now, which incidents are open; notices.py words each notice (pt-BR) for its destination;
monitor.py looks every `check_every`, opens and resolves incidents in the store (once for every
replica) and sends each notice through the delivery code, logging a notice it could not send
rather than alerting about it.
"""
