"""Password policy (SPEC §3 "Sign-in, sessions"; NIST SP 800-63B-4, single-factor).

Public API:

- ``normalize_password(password)`` -- format characters (Unicode category Cf, e.g. the
  zero-width space) dropped, then NFKC. Hashing code must call it before hashing AND
  before verifying, so that e.g. "ﬁ" (U+FB01) and "fi" are the same password, and
  invisible characters neither pad a trivial password past the checks nor lock out a
  user whose keyboard adds them. Nothing else is changed: spaces (leading, trailing,
  inner) and case are significant.
- ``check_password(password, *, min_length=15, max_length=128, context_words=())`` --
  None when the new password is acceptable, else a short English reason for the API's
  error message.
- ``common_password_count()`` -- size of the bundled list.

Rules, in the order they are checked (the first failing one is reported):

1. Valid text: a lone surrogate (possible in JSON input, not encodable as UTF-8) is
   rejected. Any other Unicode is allowed: spaces, emoji, any script.
2. Length: ``len(normalize_password(password))``, i.e. Unicode code points after
   dropping format characters and NFKC,
   within ``[min_length, max_length]``. No composition rules (no digits, upper case or
   symbols required).
3. Trivial: after lower-casing and removing whitespace ("compact" form) the password
   - has fewer than 3 distinct characters ("aaaaaaaaaaaaaaa", "abababab..."), or
   - repeats a unit of at most 4 characters ("abcabcabc...", "1234 1234 1234 ..."), or
   - is made only of runs of 3+ characters with a constant step of +1/-1
     ("abcdefghijklmnop", "987654321...", "abcdefgh12345678"; digits wrap 9->0 and Latin
     letters z->a, so "123456789012345" is one run), or
   - is a stretch of a cyclic keyboard/alphabet walk ("qwertyuiopasdfgh", "1q2w3e4r...",
     "йцукенгшщзхъ...", forwards or backwards).
   The same test is applied to the "core" (see 4) when the core is 8+ characters.
4. Common: with the bundled list (lower-case, NFKC) of common and breached passwords,
   the password is rejected when any of these is in the list:
   - the whole password, lower-cased and stripped, or its compact form;
   - its "core": the compact form with digits, punctuation and symbols stripped from
     both ends ("!!password2024!!" -> "password", "qwerty123......" -> "qwerty");
   - the repeated unit of the lower-cased, compact or core form, and that unit's core,
     when the form is one unit repeated (a trailing partial repeat allowed):
     "passwordpassword", "iloveyou iloveyou", "qwerty123qwerty1", "password!password!".
   Derived strings (core, unit) only count when 4+ characters long, so that a tiny list
   entry such as "a" or "abc" followed by many random digits is not rejected for it.
5. Context: the password must not contain any context word passed by the caller (the
   subscriber's login, contract number, the operator's name...). Each word is NFKC'd,
   lower-cased and stripped; it is used whole, split on whitespace (each part of a
   multi-word name) and with everything but letters and digits removed (so contract
   "K-2024-0001" is caught as "k20240001" too). Only strings of 4+ characters are
   checked; the match is case-insensitive and also done on the password's compact and
   letters-and-digits-only forms.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

__all__ = [
    "check_password",
    "common_password_count",
    "normalize_password",
]

_DATA_PACKAGE = "auth"
_DATA_FILE = ("data", "common-passwords.txt")

# NFKC can merge at most a few code points into one (e.g. Greek capital alpha with three
# combining marks); anything longer than this many raw code points is too long whatever
# its normal form, and is rejected without normalising a huge string.
_RAW_LENGTH_FACTOR = 8
_MIN_DERIVED = 4  # shortest core/unit/context word that is looked for
_MAX_TRIVIAL_UNIT = 4
_MIN_CORE_FOR_TRIVIAL = 8

# Cyclic walks: a password that is a stretch of one of these (or of its reverse) is trivial.
_WALKS = (
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "абвгдежзийклмнопрстуфхцчшщъыьэюя",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "1234567890qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
    "1q2w3e4r5t6y7u8i9o0p",
    "qazwsxedcrfvtgbyhnujmikolp",
    "йцукенгшщзхъфывапролджэячсмитьбю",
    "йцукенгшщзхъ",
    "фывапролджэ",
    "ячсмитьбю",
)

REASON_INVALID = "Password contains invalid characters."
REASON_TRIVIAL = "Password must not be a repeated character or a simple sequence."
REASON_COMMON = "Password is too common: it appears in lists of breached passwords."
REASON_CONTEXT = "Password must not contain your login, contract number or the operator's name."


def normalize_password(password: str) -> str:
    """The one form of `password` that is checked, hashed and verified: Unicode format
    characters (category Cf: zero-width spaces and joiners, direction marks, soft hyphens)
    dropped, so that "\u200ba\u200bb..." is "ab...", then NFKC. Call before hashing and
    before verifying."""
    visible = "".join(ch for ch in password if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", visible)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    text = resources.files(_DATA_PACKAGE).joinpath(*_DATA_FILE).read_text(encoding="utf-8")
    lines = text.splitlines()
    start = 0
    while start < len(lines) and lines[start].startswith("#"):  # leading header only
        start += 1
    return frozenset(
        entry
        for entry in (unicodedata.normalize("NFKC", line).lower().strip() for line in lines[start:])
        if entry
    )


def common_password_count() -> int:
    """Number of entries in the bundled common-password list (loaded once)."""
    return len(_common_passwords())


def _is_padding(ch: str) -> bool:
    """Digits, punctuation, symbols and separators: what people pad a word with."""
    return ch.isspace() or unicodedata.category(ch)[0] in "NPSZ"


def _core(s: str) -> str:
    start, end = 0, len(s)
    while start < end and _is_padding(s[start]):
        start += 1
    while end > start and _is_padding(s[end - 1]):
        end -= 1
    return s[start:end]


def _period(s: str) -> int:
    """Smallest p such that s[i] == s[i - p] for all i >= p (len(s) when none)."""
    n = len(s)
    if n == 0:
        return 0
    fail = [0] * n  # KMP failure function
    k = 0
    for i in range(1, n):
        while k and s[i] != s[k]:
            k = fail[k - 1]
        if s[i] == s[k]:
            k += 1
        fail[i] = k
    return n - fail[-1]


def _repeated_unit(s: str) -> str | None:
    """The unit when `s` is a unit repeated at least once more (partial tail allowed)."""
    p = _period(s)
    return s[:p] if 0 < p < len(s) else None


def _step(a: str, b: str) -> int | None:
    """+1 or -1 when `b` follows or precedes `a` (digits wrap 9->0, Latin letters z->a)."""
    if a.isascii() and b.isascii() and a.isdigit() and b.isdigit():
        diff = (ord(b) - ord(a)) % 10
        return {1: 1, 9: -1}.get(diff)
    if a.isascii() and b.isascii() and a.isalpha() and b.isalpha():
        diff = (ord(b) - ord(a)) % 26
        return {1: 1, 25: -1}.get(diff)
    diff = ord(b) - ord(a)
    return diff if diff in (1, -1) else None


def _is_step_runs(s: str) -> bool:
    """Whether `s` is made only of runs of 3+ characters with a constant step of +1 or -1
    ("abcdefghijklmnop", "123456789012345", "abcdefgh87654321")."""
    i, n = 0, len(s)
    while i < n:
        step = _step(s[i], s[i + 1]) if i + 1 < n else None
        if step is None:
            return False
        j = i + 1
        while j + 1 < n and _step(s[j], s[j + 1]) == step:
            j += 1
        if j - i + 1 < 3:
            return False
        i = j + 1
    return True


def _is_walk(s: str) -> bool:
    for walk in _WALKS:
        cyclic = walk * (len(s) // len(walk) + 2)
        if s in cyclic or s in cyclic[::-1]:
            return True
    return False


def _is_trivial(s: str) -> bool:
    if len(set(s)) < 3:
        return True
    p = _period(s)
    if p <= _MAX_TRIVIAL_UNIT and len(s) >= 2 * p:
        return True
    return _is_step_runs(s) or _is_walk(s)


def _compact(s: str) -> str:
    return "".join(s.split())


def _alnum(s: str) -> str:
    return "".join(ch for ch in s if ch.isalnum())


def _is_common(lowered: str, compact: str, core: str) -> bool:
    common = _common_passwords()
    if lowered.strip() in common or compact in common:
        return True
    derived = {core}
    for form in (lowered, compact, core):
        unit = _repeated_unit(form)
        if unit is not None:
            derived.update((unit, unit.strip(), _core(unit)))
    return any(len(d) >= _MIN_DERIVED and d in common for d in derived)


def _context_needles(context_words: Iterable[str]) -> set[str]:
    needles: set[str] = set()
    for word in context_words:
        if not word:
            continue
        value = unicodedata.normalize("NFKC", str(word)).lower().strip()
        needles.update((value, _alnum(value), *value.split()))
    return {n for n in needles if len(n) >= _MIN_DERIVED}


def _contains_context(lowered: str, context_words: Iterable[str]) -> bool:
    haystacks = (lowered, _compact(lowered), _alnum(lowered))
    return any(
        needle in haystack for needle in _context_needles(context_words) for haystack in haystacks
    )


def check_password(
    password: str,
    *,
    min_length: int = 15,
    max_length: int = 128,
    context_words: Iterable[str] = (),
) -> str | None:
    """None when `password` may be set as a new password, else a short English reason.

    `context_words`: the subscriber's login, contract number, the operator's name and
    any other value specific to the account or the service (see the module docstring).
    """
    too_short = f"Password must be at least {min_length} characters long."
    too_long = f"Password must be at most {max_length} characters long."
    if len(password) > max_length * _RAW_LENGTH_FACTOR:
        return too_long
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return REASON_INVALID
    normalized = normalize_password(password)
    if len(normalized) < min_length:
        return too_short
    if len(normalized) > max_length:
        return too_long

    lowered = normalized.lower()
    compact = _compact(lowered)
    core = _core(compact)
    if not compact or _is_trivial(compact):
        return REASON_TRIVIAL
    if len(core) >= _MIN_CORE_FOR_TRIVIAL and _is_trivial(core):
        return REASON_TRIVIAL
    if _is_common(lowered, compact, core):
        return REASON_COMMON
    if _contains_context(lowered, context_words):
        return REASON_CONTEXT
    return None
