"""Plausible Chinese names, county codes and document numbers for generated children."""

from __future__ import annotations

import datetime as dt
import random

from simulator.numbers import check_char

# The most common surnames (百家姓 by frequency), weighted roughly by their real share.
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤"
)
_SURNAME_WEIGHTS = tuple(max(1.0, 30.0 - i * 0.6) for i in range(len(SURNAMES)))
GIVEN_BOY = "浩宇轩然子涵博文俊杰昊天泽睿一诚嘉豪梓铭宸晨阳思远皓明瑞辰云帆逸凡承志锦程峻熙"
GIVEN_GIRL = "欣怡雨桐梓萱思琪子涵语嫣可馨诗雅佳怡梦瑶婉清若曦一诺雪婷心悦安琪梓玥晓雯沐晴"
GIVEN_ANY = "子一晨若思嘉安乐文明佳"

# Real GB/T 2260 county-level codes: Beijing, Shanghai, Guangdong, Sichuan.
COUNTIES = (
    "110101",  # 北京 东城区
    "110105",  # 北京 朝阳区
    "110108",  # 北京 海淀区
    "310104",  # 上海 徐汇区
    "310115",  # 上海 浦东新区
    "440106",  # 广州 天河区
    "440305",  # 深圳 南山区
    "440306",  # 深圳 宝安区
    "510104",  # 成都 锦江区
    "510107",  # 成都 武侯区
)
PASSPORT_NATIONALITIES = ("US", "KR", "JP", "SG", "MY", "GB", "DE", "FR", "CA", "AU", "RU")


def random_name(rng: random.Random, gender: str) -> str:
    """A surname and a one- or two-character given name fitting `gender`."""
    surname = rng.choices(SURNAMES, weights=_SURNAME_WEIGHTS)[0]
    pool = (GIVEN_BOY if gender == "M" else GIVEN_GIRL) + GIVEN_ANY
    length = 1 if rng.random() < 0.2 else 2
    return surname + "".join(rng.choice(pool) for _ in range(length))


def other_given_name(rng: random.Random, name: str, gender: str) -> str:
    """The same surname with a different given name (an approved name correction)."""
    while True:
        candidate = name[0] + random_name(rng, gender)[1:]
        if candidate != name:
            return candidate


def birth_date_for(rng: random.Random, entry_year: int) -> dt.date:
    """A birth date making the child 6 by 31 August of `entry_year`."""
    first = dt.date(entry_year - 7, 9, 1)
    last = dt.date(entry_year - 6, 8, 31)
    return first + dt.timedelta(days=rng.randrange((last - first).days + 1))


def resident_id(rng: random.Random, county: str, birth: dt.date, gender: str) -> str:
    """A valid 18-character resident ID: county, birth date, parity by gender, check char."""
    seq = rng.randrange(100) * 10 + rng.choice(
        (1, 3, 5, 7, 9) if gender == "M" else (0, 2, 4, 6, 8)
    )
    body = f"{county}{birth:%Y%m%d}{seq:03d}"
    return body + check_char(body)


def j_number(rng: random.Random, county: str, birth: dt.date) -> str:
    """A formal J number: region, birth date, 3-digit sequence, MOD 11-2 check char."""
    body = f"{county}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return "J" + body + check_char(body)


def l_number(rng: random.Random, county: str, birth: dt.date) -> str:
    """A temporary L number: region, birth date, 4 random digits (no check char)."""
    return f"L{county}{birth:%Y%m%d}{rng.randrange(10000):04d}"


def foreign_document(rng: random.Random, id_type: str) -> tuple[str, str]:
    """(document number, nationality) for a passport or a HK/Macau/Taiwan permit."""
    if id_type == "passport":
        letters = "".join(rng.choice("EGKMPS") for _ in range(2))
        return f"{letters}{rng.randrange(10**7):07d}", rng.choice(PASSPORT_NATIONALITIES)
    prefix = rng.choice(("H", "M", ""))
    return f"{prefix}{rng.randrange(10**8):08d}", "CN"
