"""Expected failures of the domain verbs. schema/ turns them into `UserError`s."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from types import TracebackType


class ErrorCode(StrEnum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ALREADY_REGISTERED = "ALREADY_REGISTERED"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    CONFLICT = "CONFLICT"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    PASSWORD_REJECTED = "PASSWORD_REJECTED"  # noqa: S105 - an error code
    PASSWORD_CHANGE_REQUIRED = "PASSWORD_CHANGE_REQUIRED"  # noqa: S105
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"


class DomainError(Exception):
    """An expected failure: the caller gets `code`, `message` and the offending `field`.

    The unit of work the verb runs in (core.db: `RequestReader.write`, `unit_of_work`) rolls
    back what the verb wrote before raising it, unless `keep_writes` is set: then it commits
    them, and the error is still the answer. That is for a write that must outlive the
    refusal it leads to: a counted attempt (a wrong password, a wrong code), a revoked
    session family after a refresh token's reuse.

    One error may report several problems of an input at once (SPEC §4): `also` holds the
    others (`InputProblems` collects them), and `problems` lists them all, this one first."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        retry_after_seconds: int | None = None,
        keep_writes: bool = False,
        also: Sequence[DomainError] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_seconds = retry_after_seconds
        self.keep_writes = keep_writes
        self.also = tuple(also)

    @property
    def problems(self) -> tuple[DomainError, ...]:
        """Every problem this error reports: itself, then those found with it."""
        return (self, *self.also)


class InputProblems:
    """The problems of one input, collected so that a verb reports them all at once rather
    than the first only (SPEC §4: "a payload reports every problem it found in its input").

    Each field's check runs in a `with problems:` block: a DomainError it raises is noted and
    the verb goes on to the next check (what the block assigns keeps its value before the
    block: it is not to be used unless the checks passed); `raise_found()` then raises one
    DomainError carrying every problem noted, the first with the others in `also`. A check
    written in the verb itself notes its problem with `add` instead of raising it.

        problems = InputProblems()
        with problems:
            amount = checked_amount(amount)
        with problems:
            check_method(method)
        problems.raise_found()

    The values an input is made of are checked this way (forms, lengths, ranges, required
    fields); what depends on stored state (a row that is not there, a conflict, a limit, an
    offer) is checked after them, once the values are well formed."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: list[DomainError] = []

    def __enter__(self) -> InputProblems:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if isinstance(error, DomainError):
            self.add(error)
            return True  # noted: the verb goes on to its next check
        return False

    def add(self, error: DomainError) -> None:
        """Note a problem found without raising it."""
        self.found.extend(error.problems)

    def raise_found(self) -> None:
        """Raise the problems noted, if any, as one DomainError (the first's code, message
        and field; the rest in `also`)."""
        if not self.found:
            return
        first, *others = self.found
        raise DomainError(
            first.code,
            first.message,
            field=first.field,
            retry_after_seconds=first.retry_after_seconds,
            keep_writes=any(problem.keep_writes for problem in self.found),
            also=others,
        )
