"""`schema.graphql` at the repository root is generated; it must not be stale."""

from __future__ import annotations

from pathlib import Path

from kabinet.cli import main
from schema import printed_schema

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_is_current() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == printed_schema(), (
        "schema.graphql is stale: run `make schema` (kabinet export-schema --output schema.graphql)"
    )


def test_export_schema_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    assert main(["export-schema", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == printed_schema()
