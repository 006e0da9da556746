"""Staff accounts."""

from __future__ import annotations

import re
import unicodedata

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import passwords_for
from kabinet.settings import Settings
from models import StaffUser
from models.staff import STAFF_ROLES
from resolvers.errors import DomainError, ErrorCode

_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


async def create_staff_user(
    session: AsyncSession, *, settings: Settings, username: str, role: str, password: str
) -> StaffUser:
    if not _USERNAME.match(username):
        raise DomainError(
            ErrorCode.INVALID,
            "username: 2-64 lower-case letters, digits, '.', '_' or '-', starting with a letter",
            field="username",
        )
    if role not in STAFF_ROLES:
        raise DomainError(ErrorCode.INVALID, f"role must be one of {STAFF_ROLES}", field="role")
    length = len(unicodedata.normalize("NFKC", password))
    if not settings.password_min_length <= length <= settings.password_max_length:
        raise DomainError(
            ErrorCode.PASSWORD_REJECTED,
            f"password must be {settings.password_min_length} to "
            f"{settings.password_max_length} characters long",
            field="password",
        )
    taken = await session.scalar(sa.select(StaffUser.id).where(StaffUser.username == username))
    if taken is not None:
        raise DomainError(ErrorCode.CONFLICT, f"staff user {username!r} exists", field="username")
    user = StaffUser(
        username=username, role=role, password_hash=await passwords_for(settings).hash(password)
    )
    session.add(user)
    await session.flush()
    return user
