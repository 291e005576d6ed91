"""GO webhook routing gateway: receive Gestão Online events, route them by rules, deliver them."""

from gateway.config import Config, load_config
from gateway.errors import ConfigError, GatewayError, Problem, TemplateError
from gateway.routing import RoutingResult, route_event

__all__ = ["Config", "ConfigError", "GatewayError", "Problem", "RoutingResult", "TemplateError", "load_config", "route_event"]
