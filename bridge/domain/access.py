"""Who may see which child: roles, scopes and account sealing (rules.md, 谁使用谁负责)."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from dataclasses import dataclass

from bridge.errors import Unauthenticated

# rules.md: accounts unused for six months are sealed (半年以上未使用的账号应予以封存).
SEAL_AFTER = dt.timedelta(days=180)
# A token's last use is written at most this often (not on every request), so the
# recorded last use may trail the real one by up to this much: a token can be sealed that
# much before 180 days after its real last use, still well within the rules' half year.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
# A token reads xj_tok_<12 hex>_<secret>: the id finds the row, the secret's hash must match.
TOKEN_PREFIX = "xj"
TOKEN_ID_FORM = re.compile(r"tok_[0-9a-f]{12}")  # fullmatch: no "$" a newline slips past


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

    @property
    def is_county(self) -> bool:
        """A county operator: sees its county's children only."""
        return self.role is Role.COUNTY

    def may_see(self, *, school_code: str | None, county_code: str | None) -> bool:
        """Whether a child admitted to *school_code*, from *county_code*, is in scope."""
        if self.role is Role.PROVINCE:
            return True
        if self.role is Role.COUNTY:
            return county_code is not None and county_code == self.county_code
        return school_code is not None and school_code == self.school_code

    def may_list(self, school_code: str) -> bool:
        """A school token reaches its own school's lists only; operators are filtered by
        scope within any school's."""
        return self.role is not Role.SCHOOL or self.school_code == school_code

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


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """A bearer token as presented: its id and the hash of its secret."""

    token_id: str
    secret_hash: str


def secret_hash(secret: str) -> str:
    """What is kept of a secret: its sha256 (256 random bits need no slow hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def present(token: str) -> PresentedToken:
    """Split a presented token; Unauthenticated if it is not a xueji token at all."""
    parts = token.split("_")
    if len(parts) < 4 or parts[0] != TOKEN_PREFIX or parts[1] != "tok":
        raise Unauthenticated("the token is not a xueji token")
    return PresentedToken(f"tok_{parts[2]}", secret_hash("_".join(parts[3:])))
