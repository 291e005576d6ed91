"""Request bodies checked against the vendors' official SDK models, not only our own fakes.

HubSpot: hubspot-api-client's generated models (`openapi_types`, `attribute_map`, and the
client-side validation their constructors run). Unknown keys, wrong types and missing required
fields are all reported.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any

_LIST = re.compile(r"list\[(.+)\]$")
_DICT = re.compile(r"dict\[str, (.+)\]$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "object": (object,)}


def _validating(models: ModuleType) -> Any:
    """The SDK's Configuration for these models, with its client-side validation on."""
    configuration = importlib.import_module(models.__name__.rsplit(".", 1)[0] + ".configuration").Configuration()
    configuration.client_side_validation = True
    return configuration


def model_errors(models: ModuleType, model: str, data: Any, at: str = "body") -> list[str]:
    """What the official model `model` (a class name in `models`) says of `data`."""
    list_of, dict_of = _LIST.match(model), _DICT.match(model)
    if list_of:
        if not isinstance(data, list):
            return [f"{at}: expected a list, got {type(data).__name__}"]
        return [e for i, item in enumerate(data) for e in model_errors(models, list_of.group(1), item, f"{at}[{i}]")]
    if dict_of:
        if not isinstance(data, dict):
            return [f"{at}: expected an object, got {type(data).__name__}"]
        return [e for key, value in data.items() for e in model_errors(models, dict_of.group(1), value, f"{at}.{key}")]
    if model in _PRIMITIVES:
        return [] if isinstance(data, _PRIMITIVES[model]) else [f"{at}: expected {model}, got {type(data).__name__} {data!r}"]
    cls = getattr(models, model)
    if not isinstance(data, dict):
        return [f"{at}: expected a {model} object, got {type(data).__name__}"]
    by_json = {json_key: attribute for attribute, json_key in cls.attribute_map.items()}
    errors = [f"{at}.{key}: not a field of {model}" for key in data if key not in by_json]
    for key, value in data.items():
        if key in by_json:
            errors += model_errors(models, cls.openapi_types[by_json[key]], value, f"{at}.{key}")
    try:  # the constructor's client-side validation (off by default in the SDK): required fields, enums
        cls(**{by_json[k]: v for k, v in data.items() if k in by_json}, local_vars_configuration=_validating(models))
    except ValueError as exc:
        errors.append(f"{at}: {model}: {exc}")
    return errors
