"""Schema evolution (issue 7, SPEC §1 "no breaking changes without deprecation").

`schema.graphql` is compared with its previous version by graphql-core's
`find_breaking_changes`; every breaking change must be listed in CHANGELOG.md as a line

    BREAKING: <the change's description, as graphql-core prints it>

(the failure message prints the lines to paste). The previous version is, in this order:

1. the revision in `KABINET_SCHEMA_BASE` when set (CI on a pull request: `origin/main`);
2. the last release tag (`git describe --tags --abbrev=0`);
3. without a tag: `HEAD`'s schema when the file has uncommitted edits, else the previous
   commit that changed `schema.graphql` (`git log -n 2 --format=%H -- schema.graphql`).

Without git, outside a repository, or in a shallow clone without that history, the test is
skipped and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from graphql import BreakingChange, build_schema, find_breaking_changes

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schema.graphql"
CHANGELOG = ROOT / "CHANGELOG.md"
BREAKING_LINE = re.compile(r"^\s*(?:[-*]\s*)?BREAKING:\s*(?P<text>.+?)\s*$", re.MULTILINE)


def git(*args: str) -> str | None:
    """stdout of a git command in the repository, or None when it fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def previous_schema() -> tuple[str, str]:
    """(which revision, its schema.graphql); skips the test when there is none to compare."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: no previous schema.graphql to compare with")
    if (git("rev-parse", "--is-inside-work-tree") or "").strip() != "true":
        pytest.skip("not a git work tree: no previous schema.graphql to compare with")
    shallow = (git("rev-parse", "--is-shallow-repository") or "").strip() == "true"
    base = os.environ.get("KABINET_SCHEMA_BASE", "").strip()
    if not base:
        base = (git("describe", "--tags", "--abbrev=0") or "").strip()
    if not base:
        committed = git("show", "HEAD:schema.graphql")
        if committed is not None and committed != SCHEMA.read_text(encoding="utf-8"):
            base = "HEAD"  # uncommitted edits: compare them with the last commit
        else:
            shas = (git("log", "-n", "2", "--format=%H", "--", "schema.graphql") or "").split()
            if len(shas) < 2:
                reason = (
                    "a shallow clone holds no earlier version of schema.graphql"
                    " (fetch with full history, e.g. actions/checkout fetch-depth: 0)"
                    if shallow
                    else "schema.graphql has no earlier version in git history"
                )
                pytest.skip(reason)
            base = shas[1]
    old = git("show", f"{base}:schema.graphql")
    if old is None:
        why = "a shallow clone lacks it" if shallow else "no such revision or file there"
        pytest.skip(f"cannot read schema.graphql at {base!r} ({why})")
    return base, old


def listed_breaking_changes(changelog: str) -> list[str]:
    return [match.group("text") for match in BREAKING_LINE.finditer(changelog)]


def unlisted(changes: list[BreakingChange], changelog: str) -> list[BreakingChange]:
    """The breaking changes no `BREAKING:` line of the changelog names."""
    listed = listed_breaking_changes(changelog)
    return [c for c in changes if not any(c.description in line for line in listed)]


def test_breaking_changes_are_listed_in_the_changelog() -> None:
    base, old = previous_schema()
    new = SCHEMA.read_text(encoding="utf-8")
    changes = find_breaking_changes(build_schema(old), build_schema(new))
    missing = unlisted(changes, CHANGELOG.read_text(encoding="utf-8"))
    assert not missing, (
        f"schema.graphql breaks clients compared with {base}. Deprecate instead of removing"
        " (SPEC §1), or list each change in CHANGELOG.md under 'Unreleased':\n"
        + "\n".join(f"BREAKING: {c.description}" for c in missing)
    )


# -- the rule itself, on schemas made up here (no git needed) ---------------------------------

OLD = """
type Query { contract(number: String!): Contract }
type Contract { number: String! balance: String! legacyCode: String }
"""
NEW = """
type Query { contract(number: String!): Contract }
type Contract { number: String! balance: String }
"""


def test_a_removed_or_loosened_field_is_caught_unless_listed() -> None:
    changes = find_breaking_changes(build_schema(OLD), build_schema(NEW))
    descriptions = sorted(c.description for c in changes)
    assert descriptions == [
        "Field Contract.balance changed type from String! to String.",
        "Field Contract.legacyCode was removed.",
    ]
    assert len(unlisted(changes, "# Changelog\n\nNothing breaking.\n")) == 2
    one = "## Unreleased\n- BREAKING: Field Contract.legacyCode was removed.\n"
    assert [c.description for c in unlisted(changes, one)] == [
        "Field Contract.balance changed type from String! to String."
    ]
    both = one + "BREAKING: Field Contract.balance changed type from String! to String. Use ?? 0\n"
    assert unlisted(changes, both) == []
    # the words alone, outside a BREAKING: line, do not count
    assert len(unlisted(changes, "Field Contract.legacyCode was removed.\n")) == 2


def test_the_changelog_states_the_rule() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    head = text.split("## ", 1)[0]
    assert "BREAKING:" in head and "find_breaking_changes" in head
    assert "## Unreleased" in text
