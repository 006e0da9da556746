"""One form per kind of identifier (SPEC §3): what sign-in and recovery look up and count."""

from __future__ import annotations

import pytest

from resolvers.identity import EMAIL, LOGIN, PHONE, Identifier, parse_identifier


@pytest.mark.parametrize(
    ("spellings", "expected"),
    [
        (
            ["+79160000999", "+7 916 000-09-99", "8 916 000 09 99", "8(916)0000999", "79160000999"],
            Identifier(PHONE, "+79160000999"),
        ),
        # a contract number is digits: spaces, dashes and a "+" do not make another one
        (
            [
                "770000000101",
                "7700 0000 0101",
                "7700-0000-0101",
                " +770000000101 ",
                "７７０００００００１０１",
            ],
            Identifier(PHONE, "+770000000101"),
        ),
        (
            [
                "Maria.Ivanova@Example.org",
                " maria.ivanova@example.org ",
                "MARIA.IVANOVA@EXAMPLE.ORG",
            ],
            Identifier(EMAIL, "maria.ivanova@example.org"),
        ),
        (["demo", " demo ", "ｄｅｍｏ"], Identifier(LOGIN, "demo")),
    ],
)
def test_every_spelling_of_an_identifier_has_one_form(
    spellings: list[str], expected: Identifier
) -> None:
    assert {parse_identifier(spelling) for spelling in spellings} == {expected}
    assert len({parse_identifier(spelling).key for spelling in spellings}) == 1


def test_a_contract_number_is_compared_as_its_digits() -> None:
    assert parse_identifier("7700 0000 0101").name == "770000000101"
    assert parse_identifier("demo").name == "demo"
    assert parse_identifier("Demo").key != parse_identifier("demo").key  # logins keep case


def test_the_kinds_never_share_a_key() -> None:
    keys = {parse_identifier(text).key for text in ("79160000999", "login:+79160000999", "a@b.c")}
    assert len(keys) == 3
    assert parse_identifier("   ") == Identifier(LOGIN, "")
