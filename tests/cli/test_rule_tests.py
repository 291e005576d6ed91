"""`gateway test`: shipped cases pass; a wrong expectation fails with a diff."""

from __future__ import annotations

from tests.conftest import REPO, Project, run_gateway


def test_shipped_rule_tests_pass() -> None:
    result = run_gateway("test", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 passed, 0 failed" in result.stdout


def setup(project: Project) -> None:
    project.routes((REPO / "routes.yaml").read_text())


def test_wrong_route_expectation_fails_with_diff_and_reason(project: Project) -> None:
    setup(project)
    project.write(
        "tests/routes/casos.yaml",
        """
        cases:
          - name: espera a rota errada
            event: ../../examples/events/order_created.json
            expect:
              routes: [pedido-cancelado-no-slack, espelho-de-todos-os-eventos]
        """,
    )
    result = project.gateway("test")
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL espera a rota errada (tests/routes/casos.yaml:2:5)" in out
    assert '  - pedido-cancelado-no-slack    (did not match: event_id is "ORDER_CREATED", the rule wants "ORDER_CANCEL")' in out
    assert "  + pedido-criado-no-slack    (matched, not expected)" in out
    assert "      espelho-de-todos-os-eventos" in out
    assert "0 passed, 1 failed" in out


def test_wrong_body_fragments_fail_with_diff(project: Project) -> None:
    setup(project)
    project.write(
        "casos.yaml",
        """
        cases:
          - name: texto errado
            event: examples/events/order_created.json
            set: {data.code: "777"}
            expect:
              bodies:
                pedido-criado-no-slack:
                  - "Novo pedido 0000593098"
                  - {text: "Novo pedido 0000593098", blocks: [{type: header}]}
        """,
    )
    result = project.gateway("test", "casos.yaml")
    assert result.returncode == 1
    out = result.stdout
    assert '  - Novo pedido 0000593098\n    + "text": "Novo pedido 777",' in out
    assert '  - text: "Novo pedido 0000593098"\n    + text: "Novo pedido 777"' in out
    assert "blocks" not in out.split("JSON body differs")[1].split("0 passed")[0].replace("blocks.0.type", "")


def test_inline_event_and_passing_fragments(project: Project) -> None:
    setup(project)
    project.write(
        "casos.yaml",
        """
        cases:
          - name: evento inline
            event: {event_id: ORDER_CANCEL, data: {id: "9", code: "X9", status: 2, date: {date: "2024-01-01 12:00:00.000000", timezone_type: 3, timezone: UTC}, user: {id: 1, name: Bia, document: null, email: b@x.com, phone: null, cellphone: null}}}
            expect:
              routes: [pedido-cancelado-no-slack, espelho-de-todos-os-eventos]
              bodies:
                pedido-cancelado-no-slack/slack-vendas: ["Pedido X9 cancelado", "01/01/2024 às 09:00"]
        """,
    )
    result = project.gateway("test", "casos.yaml")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 0 failed" in result.stdout


def test_invalid_case_file_names_file_and_line(project: Project) -> None:
    setup(project)
    project.write("casos.yaml", "cases:\n  - name: x\n    evnt: a.json\n    expect: {}\n")
    result = project.gateway("test", "casos.yaml")
    assert result.returncode == 1
    assert "casos.yaml:3:5: unknown key 'evnt' in the rule test file (did you mean 'event'?)" in result.stderr
