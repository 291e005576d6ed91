"""Many shops on one gateway, a file each (routes.d/<tenant>.yaml): names scoped by the shop,
source paths claimed once, each file checked alone and the set together, the children rebuilt
from the same bytes, and a reload that refuses one shop's broken file while the others go on."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.verify import load_verified
from tests.conftest import Project

MAIN = """
version: 1
settings: {egress_allow: [127.0.0.0/8]}
sources: {}
"""


def shop(name: str, path: str = "/in", body: str = '{"pedido": "{{ data.code }}"}', source: str | None = None) -> str:
    return f"""
version: 1
sources:
  {source or "go-" + name}: {{token: "token-da-{name}-123", dedupe: false}}
destinations:
  crm: {{type: http, url: "http://127.0.0.1:9{path}"}}
routes:
  - name: pedido-criado
    when: {{event_id: ORDER_CREATED}}
    send: {{to: crm, body: '{body}'}}
"""


@pytest.fixture
def shops(project: Project) -> Project:
    project.routes(MAIN)
    project.write("routes.d/loja-a.yaml", shop("loja-a", "/a"))
    project.write("routes.d/loja-b.yaml", shop("loja-b", "/b"))
    return project


def test_two_shops_may_name_a_destination_alike(shops: Project) -> None:
    config = load_config(shops.root / "routes.yaml")
    assert set(config.tenants) == {"loja-a", "loja-b"}
    assert set(config.destinations) == {"loja-a/crm", "loja-b/crm"}
    assert [r.name for r in config.routes] == ["loja-a/pedido-criado", "loja-b/pedido-criado"]
    assert [(r.tenant, r.source, r.sends[0].destination) for r in config.routes] == [("loja-a", "go-loja-a", "loja-a/crm"), ("loja-b", "go-loja-b", "loja-b/crm")]
    assert {n: s.tenant for n, s in config.sources.items()} == {"go-loja-a": "loja-a", "go-loja-b": "loja-b"}
    assert config.destinations["loja-b/crm"].spec.url.endswith("/b")  # type: ignore[attr-defined]
    assert config.egress_allow == config.tenants["loja-a"].egress_allow  # routes.yaml's allowance holds for every shop


def test_the_children_rebuild_the_same_routes_from_the_bytes_in_force(shops: Project) -> None:
    config = load_config(shops.root / "routes.yaml")
    (shops.root / "routes.d" / "loja-a.yaml").write_text("version: 1\nnot: valid")  # the disk changed since
    assert config.files is not None and set(config.files.tenants) == {"loja-a", "loja-b"}
    again = load_config(config.files)
    assert again.version == config.version and set(again.destinations) == set(config.destinations)


def test_a_source_claimed_by_two_files_names_both(shops: Project) -> None:
    shops.write("routes.d/loja-b.yaml", shop("loja-b", "/b", source="go-loja-a"))
    result = shops.gateway("check")
    assert result.returncode == 1
    assert "routes.d/loja-b.yaml:3:3: the source 'go-loja-a' (POST /hooks/go-loja-a) is claimed by routes.d/loja-a.yaml:3:3 too" in result.stdout


def test_each_file_is_checked_alone_with_its_own_lines(shops: Project) -> None:
    shops.write("routes.d/loja-a.yaml", shop("loja-a").replace("to: crm", "to: cmr"))
    shops.write("routes.d/loja-b.yaml", "version: 1\nsettings: {egress_allow: [10.0.0.0/8]}\n" + shop("loja-b").split("\n", 2)[2])
    result = shops.gateway("check")
    assert result.returncode == 1
    assert "routes.d/loja-a.yaml:9:16: route 'pedido-criado' sends to unknown destination 'cmr' (did you mean 'crm'?)" in result.stdout
    assert "routes.d/loja-b.yaml:2:12: settings.egress_allow applies to the whole gateway, every shop alike: set it in routes.yaml" in result.stdout


def test_a_file_name_that_cannot_name_a_shop_is_refused(shops: Project) -> None:
    shops.write("routes.d/Loja C.yaml", shop("loja-c"))
    result = shops.gateway("check")
    assert result.returncode == 1 and "routes.d/Loja C.yaml:1:1: 'Loja C' cannot name a shop" in result.stdout


def test_shops_without_a_routes_yaml(project: Project) -> None:
    """routes.d/ instead of routes.yaml: the gateway's defaults, every shop's own routes."""
    project.write("routes.d/loja-a.yaml", shop("loja-a").replace("http://127.0.0.1:9", "https://crm.example.com"))
    result = project.gateway("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "and 1 shop in routes.d/ (loja-a): 1 route, 1 destination, 1 source" in result.stdout


def test_a_reload_refuses_one_shops_broken_file_and_applies_the_others(shops: Project) -> None:
    running = load_verified(str(shops.root / "routes.yaml"))
    shops.write("routes.d/loja-a.yaml", shop("loja-a").replace("to: crm", "to: cmr"))  # broken
    shops.write("routes.d/loja-b.yaml", shop("loja-b", "/b-novo"))  # fine
    shops.write("routes.d/loja-c.yaml", shop("loja-c", body='{"x": "{{ data.nada.x }}"}'))  # a new shop whose template fails on the samples
    new = load_verified(str(shops.root / "routes.yaml"), previous=running)
    assert new.tenants["loja-a"] is running.tenants["loja-a"]  # its last good version
    assert new.destinations["loja-b/crm"].spec.url.endswith("/b-novo")  # type: ignore[attr-defined]
    assert "loja-c" not in new.tenants and not any(r.tenant == "loja-c" for r in new.routes)  # never good: not loaded
    assert sorted(new.refused) == ["loja-a", "loja-c"]
    assert "unknown destination 'cmr'" in str(new.refused["loja-a"][0]) and "routes.d/loja-a.yaml:9:16: " in str(new.refused["loja-a"][0])
    assert "nada" in str(new.refused["loja-c"][0])
    with pytest.raises(ConfigError):  # at a start there is no last good version: every error refuses
        load_verified(str(shops.root / "routes.yaml"))


def test_a_broken_routes_yaml_refuses_the_whole_reload(shops: Project) -> None:
    running = load_verified(str(shops.root / "routes.yaml"))
    shops.routes(MAIN + "routes: 3\n")
    with pytest.raises(ConfigError, match="'routes' must be a list"):
        load_verified(str(shops.root / "routes.yaml"), previous=running)


def test_the_three_shops_example_passes_check_with_its_variables_set() -> None:
    """examples/shops/ (README, "Serving several shops"): three shops, each its own file."""
    from tests.conftest import REPO, run_gateway

    env = {
        "LOJA_CENTRO_GO_TOKEN": "loja-centro-token-1", "LOJA_CENTRO_SLACK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "PADARIA_GO_TOKEN": "padaria-token-novo-1", "PADARIA_GO_TOKEN_OLD": "padaria-token-velho-1", "PADARIA_HUBSPOT_TOKEN": "pat-na1-000000",
        "FERRAGENS_GO_TOKEN": "ferragens-token-1", "FERRAGENS_RDSTATION_TOKEN": "rd-token-000000",
    }
    result = run_gateway("check", "--config", "examples/shops/routes.yaml", cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 shops in routes.d/ (ferragens, loja-centro, padaria): 3 routes, 3 destinations, 3 sources" in result.stdout and "0 warnings" in result.stdout
    config = load_config(REPO / "examples" / "shops" / "routes.yaml", env)
    assert config.sources["padaria"].tokens == ("padaria-token-novo-1", "padaria-token-velho-1")
    assert config.sources["loja-centro"].quota is not None and config.sources["loja-centro"].quota.burst == 40
    assert set(config.destinations) == {"ferragens/crm", "loja-centro/slack", "padaria/crm"}


def test_a_tenant_uses_the_folders_of_routes_yaml_unless_it_names_its_own(shops: Project) -> None:
    shops.routes(MAIN.replace("settings: {egress_allow: [127.0.0.0/8]}", "settings: {egress_allow: [127.0.0.0/8], templates: modelos}"))
    shops.write("modelos/pedido.json.j2", '{"pedido": "{{ data.code }}"}')
    shops.write("routes.d/loja-a.yaml", shop("loja-a").replace("body: '{\"pedido\": \"{{ data.code }}\"}'", "template: pedido.json.j2"))
    shops.write("routes.d/loja-b.yaml", "version: 1\nsettings: {templates: templates}\n" + shop("loja-b").split("\n", 2)[2].replace("body: '{\"pedido\": \"{{ data.code }}\"}'", "template: slack/order_created.json.j2"))
    config = load_config(shops.root / "routes.yaml")
    assert config.tenants["loja-a"].settings.templates == "modelos" and config.tenants["loja-b"].settings.templates == "templates"
