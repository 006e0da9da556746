"""Regenerate ``auth/data/common-passwords.txt``, the bundled list of common passwords.

Source: ``django/contrib/auth/common-passwords.txt.gz`` inside the Django wheel on PyPI
(default: Django 5.2.19, ``django-5.2.19-py3-none-any.whl``). Django describes it as
"20000 common passwords (unhexed, lowercased and deduplicated), created by Royce
Williams" (``django.contrib.auth.password_validation.CommonPasswordValidator``); it is
ordered most common first. Licence: BSD-3-Clause, Copyright (c) Django Software
Foundation and individual contributors; the licence text is copied next to the list as
``auth/data/common-passwords.LICENSE``.

Django is NOT a dependency of Kabinet: the script only downloads the wheel into a
temporary directory (``pip download --no-deps``, nothing is installed) and reads the
list out of the zip.

Processing: every entry is NFKC-normalised, lower-cased and stripped (the same
normalisation as ``auth.password_policy``), empty entries are dropped, duplicates are
dropped keeping the first (most common) occurrence; the source order is kept. The
output is deterministic: running the script twice gives the same bytes.

File format: UTF-8 plain text, one password per line. It starts with a header block
of lines beginning with ``#``; the first line that does not begin with ``#`` ends the
header, and from there on every line is a password (a few real passwords begin with
``#``, such as ``#1pimp``, so only the leading block is a comment).

Usage::

    .venv/bin/python scripts/build_common_passwords.py            # download and rebuild
    .venv/bin/python scripts/build_common_passwords.py --wheel path/to/django-X-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from email.parser import Parser
from pathlib import Path

DJANGO_VERSION = "5.2.19"
LIST_MEMBER = "django/contrib/auth/common-passwords.txt.gz"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "auth" / "data" / "common-passwords.txt"
LICENSE_NAME = "common-passwords.LICENSE"


def download_wheel(version: str, dest: Path) -> Path:
    """Fetch the Django wheel with pip (no dependencies, nothing installed)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        f"django=={version}",
    ]
    subprocess.run(cmd, check=True)  # noqa: S603 - fixed argv, no shell
    wheels = sorted(dest.glob(f"django-{version}-*.whl")) or sorted(dest.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"pip did not download a Django {version} wheel into {dest}")
    return wheels[0]


def normalise(entry: str) -> str:
    return unicodedata.normalize("NFKC", entry).lower().strip()


def read_wheel(wheel: Path) -> tuple[list[str], str, str, str]:
    """(passwords in source order, version, licence expression, licence text)."""
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(LIST_MEMBER)).decode("utf-8")
        dist_info = next(n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n)
        meta = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode("utf-8"))
        licence_path = next(
            n
            for n in (f"{dist_info}/licenses/LICENSE", f"{dist_info}/LICENSE")
            if n in zf.namelist()
        )
        licence_text = zf.read(licence_path).decode("utf-8")
    licence = meta.get("License-Expression") or meta.get("License") or "BSD-3-Clause"
    seen: set[str] = set()
    passwords: list[str] = []
    for line in raw.splitlines():
        entry = normalise(line)
        if entry and entry not in seen:
            seen.add(entry)
            passwords.append(entry)
    return passwords, meta["Version"], licence, licence_text


def render(passwords: list[str], version: str, licence: str, wheel: Path, sha256: str) -> str:
    header = [
        "Common and breached passwords for Kabinet's password policy (auth/password_policy.py).",
        f"Source: {LIST_MEMBER} from the Django {version} wheel on PyPI",
        f"  ({wheel.name}, sha256 {sha256}).",
        "Django's list: 20000 common passwords (unhexed, lowercased and deduplicated),",
        "  created by Royce Williams, as credited in Django's CommonPasswordValidator.",
        f"Licence: {licence}, Copyright (c) Django Software Foundation and individual",
        f"  contributors; full text in {LICENSE_NAME} beside this file.",
        "Processing: NFKC, lower-cased, stripped, deduplicated; source order kept (most",
        f"  common first). {len(passwords)} entries. Regenerate with",
        "  scripts/build_common_passwords.py; do not edit by hand.",
        "Format: UTF-8, one password per line. Only this leading block of '#' lines is a",
        "  comment: after it every line is a password, even one that starts with '#'.",
    ]
    lines = [f"# {h}" for h in header] + passwords
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=DJANGO_VERSION, help="Django version to take")
    parser.add_argument("--wheel", type=Path, help="use this Django wheel, do not download")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kabinet-common-passwords-") as tmp:
        wheel = args.wheel or download_wheel(args.version, Path(tmp))
        sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        passwords, version, licence, licence_text = read_wheel(wheel)

    if len(passwords) < 10_000:
        raise SystemExit(f"only {len(passwords)} passwords in {wheel.name}; expected >= 10000")
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(passwords, version, licence, wheel, sha256), encoding="utf-8")
    (output.parent / LICENSE_NAME).write_text(
        f"The list in {output.name} comes from Django {version} ({LIST_MEMBER}),\n"
        f"distributed under the following licence ({licence}).\n\n{licence_text}",
        encoding="utf-8",
    )
    print(f"wrote {len(passwords)} passwords to {output} ({output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
