"""Realistic electronic record files (学籍档案) of media type application/json."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
from typing import Any

import orjson

MEDIA_TYPE = "application/json"
VACCINES = (
    "乙肝疫苗",
    "卡介苗",
    "脊灰疫苗",
    "百白破疫苗",
    "麻腮风疫苗",
    "乙脑疫苗",
    "流脑疫苗",
    "甲肝疫苗",
)


def _checkups(rng: random.Random, birth: dt.date, until: dt.date) -> list[dict[str, Any]]:
    checkups = []
    on = dt.date(birth.year + 3, 9, 15)
    height = 95.0 + rng.uniform(-4, 4)
    weight = 14.0 + rng.uniform(-2, 2)
    while on < until:
        checkups.append(
            {
                "on": on.isoformat(),
                "height_cm": round(height, 1),
                "weight_kg": round(weight, 1),
                "vision_left": round(rng.uniform(4.8, 5.1), 1),
                "vision_right": round(rng.uniform(4.8, 5.1), 1),
                "hemoglobin_g_l": rng.randrange(110, 140),
                "notes": rng.choice(
                    ("正常", "正常", "正常", "龋齿1颗,已告知家长", "轻度贫血,复查正常")
                ),
            }
        )
        on += dt.timedelta(days=182)
        height += rng.uniform(2.5, 4.0)
        weight += rng.uniform(0.8, 1.6)
    return checkups


def _vaccinations(rng: random.Random, birth: dt.date) -> list[dict[str, Any]]:
    return [
        {
            "vaccine": vaccine,
            "dose": dose,
            "on": (birth + dt.timedelta(days=30 * (i + 1) + 60 * dose)).isoformat(),
            "site": rng.choice(("社区卫生服务中心", "区妇幼保健院")),
        }
        for i, vaccine in enumerate(VACCINES)
        for dose in range(1, rng.randrange(2, 4))
    ]


def build_record_file(
    rng: random.Random,
    *,
    student_number: str,
    child: dict[str, Any],
    kindergarten_code: str,
    history: list[dict[str, Any]],
    target_size: int,
) -> bytes:
    """A JSON record file of about `target_size` bytes (padded by a scanned attachment)."""
    birth = dt.date.fromisoformat(child["birth_date"])
    until = dt.date.fromisoformat(history[-1]["on"])
    small = rng.randbytes(rng.randrange(200, 600))
    doc: dict[str, Any] = {
        "student_number": student_number,
        "child": child,
        "kindergarten_code": kindergarten_code,
        "history": history,
        "health": {
            "checkups": _checkups(rng, birth, until),
            "vaccinations": _vaccinations(rng, birth),
        },
        "attachments": [
            _attachment("入园健康检查表.pdf", "application/pdf", b"%PDF-1.7\n" + small),
            _attachment("毕业照.jpg", "image/jpeg", b""),
        ],
    }
    without_photo = len(orjson.dumps(doc))
    # Base64 turns 3 bytes into 4 characters; leave room for the size's digits.
    photo_len = max(0, (target_size - without_photo - 8) * 3 // 4)
    photo = b"\xff\xd8\xff\xe0" + rng.randbytes(max(0, photo_len - 4))
    doc["attachments"][1] = _attachment("毕业照.jpg", "image/jpeg", photo)
    return orjson.dumps(doc)


def _attachment(name: str, media_type: str, content: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "media_type": media_type,
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "content_base64": base64.b64encode(content).decode(),
    }
