"""Password policy (SPEC §3 "Sign-in, sessions"): NIST SP 800-63B-4 style rules."""

from __future__ import annotations

import random
import string
import unicodedata
from importlib import resources

import pytest

from auth.password_policy import (
    REASON_COMMON,
    REASON_CONTEXT,
    REASON_INVALID,
    REASON_TRIVIAL,
    check_password,
    common_password_count,
    normalize_password,
)

GOOD = "velvet otter juggles 7 lanterns"  # a random-looking passphrase, all lower case
CONTEXT = ["ivan.petrov", "K-2024-000123", "Kabinet Telecom"]


def test_bundled_list_has_at_least_10000_entries() -> None:
    assert common_password_count() >= 10_000
    assert common_password_count() == common_password_count()  # loaded once, same answer


def test_bundled_list_file_is_documented_lowercase_and_deduplicated() -> None:
    text = resources.files("auth").joinpath("data", "common-passwords.txt").read_text("utf-8")
    lines = text.splitlines()
    header = [line for line in lines[:20] if line.startswith("# ")]
    assert any("Source:" in line and "Django" in line for line in header)
    assert any("Licence: BSD-3-Clause" in line for line in header)
    entries = lines[len(header) :]
    assert len(entries) == len(set(entries)) == common_password_count()
    assert all(e == unicodedata.normalize("NFKC", e).lower().strip() and e for e in entries)
    assert entries[:4] == ["123456", "123456789", "qwerty", "password"]  # most common first


@pytest.mark.parametrize(
    "password",
    [
        "password",
        "qwerty123",
        "iloveyou",
        "PASSWORD",
        " Password ",
    ],
)
def test_common_passwords_are_rejected_as_short_or_common(password: str) -> None:
    assert check_password(password) is not None
    # With the length rule out of the way, the common-list rule alone rejects them.
    assert check_password(password, min_length=1) == REASON_COMMON


@pytest.mark.parametrize(
    "password",
    [
        "password1234567",
        "Password2024!!!!",
        "!!!password2024!!!",
        "qwerty123!!!!!!",
        "qwerty123qwerty123",
        "Qwerty123 Qwerty123",
        "iloveyou1234567",
        "ILoveYou!ILoveYou!",
        "passwordpassword",
        "password password",
        "passwordpasswor",  # trailing partial repeat
        "iloveyouiloveyouiloveyou",
        "friend of emily",  # a 15-character entry of the list itself
    ],
)
def test_padded_or_repeated_common_passwords_are_rejected(password: str) -> None:
    assert len(password) >= 15
    assert check_password(password) == REASON_COMMON


def test_length_limits_are_15_and_128_code_points() -> None:
    base = "zq7 mango vortex plum quartz fjord wicket lumen ox " * 3
    assert check_password(base[:14]) == "Password must be at least 15 characters long."
    assert check_password(base[:15]) is None
    assert check_password("tangerine orbit") is None  # exactly 15
    long_ok = (base * 3)[:128]
    assert len(long_ok) == 128
    assert check_password(long_ok) is None
    assert check_password((base * 3)[:129]) == "Password must be at most 128 characters long."
    assert check_password("x" * 100_000) == "Password must be at most 128 characters long."


def test_limits_are_configurable() -> None:
    assert check_password("mango vortex", min_length=12) is None
    assert check_password(GOOD, max_length=20) == "Password must be at most 20 characters long."


def test_length_is_counted_in_code_points_after_nfkc() -> None:
    emoji = "🦊🌵🎈🧲🍄🚲🪁🦉🌊🔭🧩🍋🎻🪐🦔"  # 15 code points, 60 UTF-8 bytes
    assert len(emoji) == 15
    assert check_password(emoji) is None
    assert check_password(emoji[:14]) is not None

    cyrillic = "лиса кактус шар"  # 15 Cyrillic letters and spaces
    assert len(cyrillic) == 15
    assert check_password(cyrillic) is None
    assert check_password(cyrillic[:14]) is not None

    composed = "crème brûlée 42"  # 15 code points once composed
    decomposed = unicodedata.normalize("NFD", composed)
    assert len(decomposed) == 18
    assert check_password(decomposed) is None
    short_decomposed = unicodedata.normalize("NFD", "crème brûlée 4")
    assert len(short_decomposed) == 17  # 17 raw code points, but only 14 after NFKC
    assert check_password(short_decomposed) == "Password must be at least 15 characters long."

    ligature = "ﬁsh tank marbles"[:14]  # "ﬁ" is one code point, two after NFKC
    assert len(ligature) == 14
    assert len(normalize_password(ligature)) == 15
    assert check_password(ligature) is None


def test_normalize_password_is_nfkc_and_keeps_everything_else() -> None:
    assert normalize_password("ﬁ") == "fi"
    assert normalize_password("ﬁsh") == normalize_password("fish")
    assert normalize_password("Ｐａｓｓ") == "Pass"  # full-width forms
    assert normalize_password("e\u0301") == "é"
    assert normalize_password("  Mixed Case  ") == "  Mixed Case  "  # no strip, no case fold


def test_format_characters_are_dropped_before_the_checks() -> None:
    """Issue 13, item 10: zero-width spaces (and other Cf characters) padding a trivial or
    common password do not get it past the checks, nor count towards the length."""
    zwsp, zwj, bom, soft_hyphen, lrm = "\u200b", "\u200d", "\ufeff", "\u00ad", "\u200e"
    padded = zwsp + zwsp.join("abcdefghijklmnop")
    assert normalize_password(padded) == "abcdefghijklmnop"
    assert check_password(padded) == REASON_TRIVIAL
    assert check_password(zwj.join("aaaaaaaaaaaaaaaa")) == REASON_TRIVIAL
    assert check_password(bom + soft_hyphen.join("password") + lrm * 20) is not None
    assert check_password(lrm.join("iloveyouiloveyou")) == REASON_COMMON
    # invisible characters do not make a short password long enough
    assert check_password("short" + zwsp * 20).startswith("Password must be at least")
    # and the same password typed with or without them is one password
    assert normalize_password(zwsp + GOOD + zwj) == normalize_password(GOOD)


@pytest.mark.parametrize(
    "password",
    [
        "my ivan.petrov password",
        "IVAN.PETROV rocks hard",
        "contract k-2024-000123 ok",
        "contract K2024000123 ok",
        "kabinet is the best isp",
        "i like TELECOM companies",
        "КАБИНЕТ kabiNET forever",
    ],
)
def test_context_words_are_rejected_case_insensitively(password: str) -> None:
    assert check_password(password, context_words=CONTEXT) == REASON_CONTEXT
    assert check_password(password) is None  # the same password without context is fine


def test_context_words_are_nfkc_normalised_and_short_ones_ignored() -> None:
    assert check_password("ｋａｂｉｎｅｔ hill runner", context_words=["Kabinet"]) == REASON_CONTEXT
    assert check_password("my abc is so long now", context_words=["abc", "", "my"]) is None


def test_spaces_and_emoji_are_allowed() -> None:
    assert check_password("  leading and trailing spaces  ") is None
    assert check_password("snow 🐧 on the 🌋 tonight") is None
    assert check_password("日本語のパスフレーズです十五文字") is None


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaaaaa",
        "AAAAAAAAAAAAAAAAAAAA",
        "               ",
        "🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥",
        "abababababababab",
        "aaaaaaaaaaaaaab",
        "abcabcabcabcabcabc",
        "1234 1234 1234 1234",
        "123456789012345",
        "987654321098765",
        "abcdefghijklmnop",
        "ABCDEFGHIJKLMNOPQRS",
        "zyxwvutsrqponmlk",
        "abcdefgh12345678",
        "qwertyuiopasdfghjkl",
        "1q2w3e4r5t6y7u8i9o0p",
        "1qaz2wsx3edc4rfv",
        "абвгдеёжзийклмн",
        "йцукенгшщзхъфыва",
        "!!abcdefghijklmnop!!",
    ],
)
def test_repeated_and_sequence_passwords_are_rejected(password: str) -> None:
    assert check_password(password) == REASON_TRIVIAL


def test_no_composition_rules() -> None:
    assert check_password("correct horse battery staple") is None
    assert check_password("velvetotterjugglesfivelanterns") is None  # letters only
    assert check_password("8472 6193 8475 6102") is None  # digits only, not a sequence
    assert check_password(GOOD) is None


def test_random_passwords_are_accepted() -> None:
    rng = random.Random(20240615)
    alphabet = string.ascii_letters + string.digits
    for _ in range(300):
        password = "".join(rng.choice(alphabet) for _ in range(16))
        assert check_password(password, context_words=CONTEXT) is None, password


def test_lone_surrogate_is_rejected() -> None:
    assert check_password("a perfectly long\ud800 password") == REASON_INVALID
