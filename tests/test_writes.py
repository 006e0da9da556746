"""Writes one way (issue 14): a table's rows are written only by the statements of the module
that owns it. Another module composes the owner's builders (`ledger.posting`,
`bonus.accrual`, `receipts.receipt_insert`, `outbox.enqueue_insert`, …) or calls its verbs
(`ledger.post`, `queue_letter`, `record_audit`); it never spells the owner's INSERT or
UPDATE itself, in SQL text or in SQLAlchemy, nor builds the owner's ORM rows.

Read from the source (every module of the service's packages): a write of an owned table
outside its owner fails here with where it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kabinet", "schema", "resolvers", "auth", "core")

# table → (its model, the module that writes it)
OWNERS = {
    "ledger_entries": ("LedgerEntry", "resolvers/ledger.py"),
    "bonus_accounts": ("BonusAccount", "resolvers/bonus.py"),
    "bonus_entries": ("BonusEntry", "resolvers/bonus.py"),
    "receipts": ("Receipt", "resolvers/receipts.py"),
    "outbox": ("OutboxMessage", "core/outbox.py"),
    "audit_log": ("AuditEntry", "resolvers/audit.py"),
}
# A balance changes only through the ledger (`balance = balance ± x` with its entry).
BALANCE_OWNER = "resolvers/ledger.py"
WRITERS = {"insert", "update", "delete", "pg_insert", "sqlite_insert"}
SQL_WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(" + "|".join(OWNERS) + r")\b", re.I
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _models(tree: ast.AST) -> dict[str, str]:
    """The owned models this module imports from `models` (their name → their table)."""
    owned = {model: table for table, (model, _) in OWNERS.items()}
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "models":
            for alias in node.names:
                if alias.name in owned:
                    found[alias.asname or alias.name] = owned[alias.name]
    return found


def _table_names(tree: ast.AST, models: dict[str, str]) -> dict[str, str]:
    """Names bound to an owned table (`_ledger = LedgerEntry.__table__`), and the models."""
    names = dict(models)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "__table__"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in models
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = models[node.value.value.id]
    return names


def _callee(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _target(node: ast.AST, tables: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return tables.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        return _target(node.value, tables)
    return None


def writes_outside_owners() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = _docstrings(tree)
            models = _models(tree)
            tables = _table_names(tree, models)
            for node in ast.walk(tree):
                where = f"{module}:{getattr(node, 'lineno', '?')}"
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if id(node) in docstrings:
                        continue
                    for table in SQL_WRITE.findall(node.value):
                        if OWNERS[table.lower()][1] != module:
                            found.append(f"{where}: SQL text writes {table}")
                if not isinstance(node, ast.Call):
                    continue
                callee = _callee(node)
                if callee in WRITERS and node.args:
                    table = _target(node.args[0], tables)
                    if table is not None and OWNERS[table][1] != module:
                        found.append(f"{where}: {callee}() of {table}")
                if callee in models and OWNERS[models[callee]][1] != module:
                    found.append(f"{where}: a {callee} row built outside its owner")
                if (
                    callee == "values"
                    and any(keyword.arg == "balance" for keyword in node.keywords)
                    and module != BALANCE_OWNER
                ):
                    found.append(f"{where}: a balance changed outside the ledger")
    return found


def test_each_table_is_written_by_the_module_that_owns_it() -> None:
    assert writes_outside_owners() == []
