"""What an audit's exit status says, as a pure function of its result: ``audit_outcome``
gives the status a job sees and one line of reason. The command line prints the
reason of status 3 first, on standard error and at the top of the output.

    0  no finding at or above --fail-on
    4  findings at or above --fail-on
    3  nothing could be audited: no charge read, no readable plan, none of the
       patients asked for, or more than half of the charges rows rejected
    2  (the command line's own) a usage error
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from rtcode.audit.findings import AuditResult

CLEAN = 0
FINDINGS = 4
NOT_AUDITED = 3

# More than this share of a charges source's rows rejected makes the audit "not
# audited": the findings would then describe a minority of the charges, and a job must
# not pass on them. Half: a source whose rows are mostly unreadable is the wrong file,
# in the wrong format or with the wrong column names, not a few bad rows.
MAX_REJECTED_SHARE = 0.5


class Outcome(NamedTuple):
    """``status, reason = audit_outcome(...)``."""

    status: int  # CLEAN, FINDINGS or NOT_AUDITED
    reason: str  # one line


def audit_outcome(
    result: AuditResult, fail_on: str, max_rejected_share: float = MAX_REJECTED_SHARE
) -> Outcome:
    """The exit status of an audit and why, checked in this order: nothing could be
    audited (3), more than ``max_rejected_share`` of the rows rejected (3), findings at
    or above ``fail_on`` (4), none (0)."""
    read = result.charges_read if result.charges_read is not None else len(result.charges)
    rejected = result.rows_rejected if result.rows_rejected is not None else len(result.rejected)
    source = result.charges_source or "the charges file"
    if result.plans_scanned == 0:
        errors = f" ({len(result.errors)} file(s) could not be read)" if result.errors else ""
        return Outcome(NOT_AUDITED, f"nothing audited: no readable RT Plan was found{errors}")
    if read == 0:
        return Outcome(
            NOT_AUDITED,
            f"nothing audited: no charge could be read from {source}"
            + (f" ({rejected} row(s) rejected, listed in the output)" if rejected else ""),
        )
    if rejected and rejected > max_rejected_share * (read + rejected):
        return Outcome(
            NOT_AUDITED,
            f"not audited: {rejected} of the {read + rejected} rows of {source} were rejected,"
            f" more than {max_rejected_share:.0%}; check its format, column names and date"
            " format (rejected rows are listed in the output)",
        )
    if result.patients is not None and not result.charges and not result.courses:
        return Outcome(
            NOT_AUDITED,
            "nothing audited: no charge and no plan of the patient(s) given with --patient",
        )
    failing = result.at_or_above(fail_on)
    if failing:
        return Outcome(FINDINGS, f"{len(failing)} finding(s) at or above {fail_on}")
    return Outcome(CLEAN, f"no finding at or above {fail_on}")
