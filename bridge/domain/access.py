"""Who may see which child: roles, scopes and account sealing (rules.md, 谁使用谁负责)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

# rules.md: accounts unused for six months are sealed (半年以上未使用的账号应予以封存).
SEAL_AFTER = dt.timedelta(days=180)
# A token's last use is written at most this often (not on every request), so the
# recorded last use may trail the real one by up to this much: a token can be sealed that
# much before 180 days after its real last use, still well within the rules' half year.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class Role(enum.StrEnum):
    """The three kinds of API caller."""

    SCHOOL = "school"
    COUNTY = "county"
    PROVINCE = "province"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a token: its role and the scope it is bound to."""

    token_id: str
    role: Role
    school_code: str | None = None
    county_code: str | None = None

    @property
    def is_operator(self) -> bool:
        """County and provincial operators (not schools)."""
        return self.role in (Role.COUNTY, Role.PROVINCE)

    def may_see(self, *, school_code: str | None, county_code: str | None) -> bool:
        """Whether a child admitted to *school_code*, from *county_code*, is in scope."""
        if self.role is Role.PROVINCE:
            return True
        if self.role is Role.COUNTY:
            return county_code is not None and county_code == self.county_code
        return school_code is not None and school_code == self.school_code

    @property
    def scope(self) -> dict[str, str]:
        """The scope as shown to operators."""
        if self.role is Role.SCHOOL and self.school_code:
            return {"school_code": self.school_code}
        if self.role is Role.COUNTY and self.county_code:
            return {"county_code": self.county_code}
        return {}


def due_for_sealing(
    *, last_used_at: dt.datetime | None, created_at: dt.datetime, now: dt.datetime
) -> bool:
    """An account unused (or never used) for 180 days is sealed."""
    return now - (last_used_at or created_at) >= SEAL_AFTER
