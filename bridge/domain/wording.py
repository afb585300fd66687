"""What the console says: every code an operator meets, as a sentence in Chinese first,
English beside it, with the advice for what to do.

Pure data and lookups. Codes are the operator interface's names (categories, set-aside
reasons, parked-message reasons, phases, retry outcomes, event types, detail keys); the
sentences are what a county data centre reads. A code without wording is shown as itself
with a plain "unknown" sentence, never dropped (tests/unit/test_wording.py checks that
every code the bridge has is worded).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bridge.domain.handoff import Phase, SetAsideReason
from bridge.domain.reconciliation import Category
from bridge.domain.working_days import CHINA


@dataclass(frozen=True, slots=True)
class Wording:
    """A code as an operator reads it: what it means, and what to do about it."""

    zh: str
    en: str
    advice_zh: str = ""
    advice_en: str = ""

    @property
    def both(self) -> str:
        """Chinese first, English beside."""
        return f"{self.zh} {self.en}"


W = Wording

CATEGORY_WORDING: dict[Category, Wording] = {
    Category.MATCHED: W(
        "三方一致：学前系统、衔接台账和小学学籍系统对该儿童的记录相同。",
        "Matched: the preschool roster, the bridge and the primary registry agree.",
        "无需处理。", "Nothing to do."),
    Category.IN_FLIGHT: W(
        "移交中：学籍号和档案正在移交，尚在期限内。",
        "In flight: the hand-over is under way and within its deadline.",
        "暂无需处理。", "Nothing yet."),
    Category.LOST_UPSTREAM: W(
        "上游事件缺失：学前系统显示已毕业，但衔接平台没有收到毕业事件。",
        "Lost upstream: the preschool roster says graduated, but the bridge never received "
        "the graduation event.",
        "请学前学籍系统重新发布该儿童的事件。",
        "Ask the preschool registry to re-publish the child's events."),
    Category.MISSING_AT_REGISTRY: W(
        "小学学籍系统缺失：已移交的儿童在小学学籍系统中查不到。",
        "Missing at registry: a child handed over is not at the primary registry.",
        "已自动重新提交；如反复出现，请向小学学籍系统核实原因。",
        "Re-submitted automatically; if it recurs, ask the registry why it vanished."),
    Category.REGISTERED_NOT_GRADUATED: W(
        "已注册但未毕业：小学已注册学籍，但学前系统显示仍在园。",
        "Registered, not graduated: registered at the primary registry while still in "
        "kindergarten.",
        "请与幼儿园核实；如儿童留园，请撤回注册。",
        "Check with the kindergarten; withdraw the registration if the child stays."),
    Category.DEFERRED_BUT_REGISTERED: W(
        "缓学但已注册：儿童已批准缓学，小学学籍系统仍有注册。",
        "Deferred but registered: the child deferred, yet a registration stands.",
        "必须撤回注册（暂缓注册学籍），请核查撤回情况。",
        "The registration must be withdrawn (暂缓注册学籍); check the withdrawal."),
    Category.CANCELLED_BUT_REGISTERED: W(
        "已注销但已注册：学籍已注销，小学学籍系统仍有注册。",
        "Cancelled but registered: the record was cancelled, yet a registration stands.",
        "注销的学籍不得注册，请撤回该注册。",
        "A cancelled record must not be registered; have the registration withdrawn."),
    Category.IDENTITY_CONFLICT: W(
        "身份冲突：小学学籍系统中该身份证件已对应另一个学籍号。",
        "Identity conflict: the registry holds this identity under another number.",
        "由县级核实并处理重号问题。", "The county resolves it."),
    Category.TWO_NUMBERS_ONE_IDENTITY: W(
        "一人多号：同一身份证件对应两个学籍号。",
        "Two numbers, one identity: one person holds two student numbers.",
        "一人一号，由县级核实并注销重复学籍。",
        "One person, one number (一人一号): the county resolves the duplicate."),
    Category.FORMER_NUMBER_REGISTERED: W(
        "旧学籍号仍有注册：儿童换号后，旧号在小学学籍系统中仍有注册。",
        "Registered under a former number: the child's old number is still registered.",
        "已自动迁移到现学籍号或撤回。",
        "Moved to the current number or withdrawn automatically."),
    Category.BAD_SOURCE_FILE: W(
        "档案文件校验失败：从学前系统取得的档案与毕业事件所述不符。",
        "Bad source file: the record file from the preschool registry does not match the "
        "graduation event.",
        "请幼儿园重新出具档案后重试。",
        "Ask the kindergarten to re-issue the record file, then retry."),
    Category.FILE_DIGEST_MISMATCH: W(
        "档案摘要不一致：小学学籍系统中的档案与衔接平台核验的不同。",
        "File digest mismatch: the registry's record file differs from the verified one.",
        "已用核验过的副本自动重传。", "Re-uploaded automatically from the verified copy."),
    Category.FILE_NOT_DELIVERED: W(
        "档案未送达：学籍已注册，档案尚未送达小学学籍系统。",
        "File not delivered: registered, but the record file has not reached the registry.",
        "已用核验过的副本自动重传。", "Re-uploaded automatically from the verified copy."),
    Category.FILE_NOT_PULLED: W(
        "学校未接收档案：学校在期限内没有下载（接收）学籍档案。",
        "File not pulled: the school has not taken the record file in within its deadline.",
        "请电话提醒学校接收学籍档案。",
        "Call the school: remind it to take the record file in (接收学籍档案)."),
    Category.STORED_FILE_DAMAGED: W(
        "档案存储校验失败：衔接平台保存的加密档案未通过完整性校验。",
        "Stored file damaged: the bridge's sealed copy failed its integrity check.",
        "已自动从学前系统重新获取；如反复出现，请查看审计日志，警惕篡改。",
        "Fetched again automatically; if it recurs, see the audit log and suspect tampering."),
    Category.NOT_ARRIVED: W(
        "未报到：开学已过报到期限，学校仍未报告该儿童实际报到。",
        "Not arrived: past the reporting deadline after term started, the school has not "
        "reported the child's arrival.",
        "请联系学校核实该儿童是否到校；学校不知情时联系家长（控辍保学）。",
        "Call the school to check whether the child came; if it does not know, contact the "
        "family."),
    Category.OVERDUE: W(
        "超期未完成：毕业后超过10个工作日，移交仍未完成。",
        "Overdue: the hand-over has not completed within 10 working days of graduation.",
        "请查看个案页的登记系统调用，找出卡住的原因。",
        "Open the case page and see from its registry calls why it is stuck."),
    Category.DEFERRAL_EXPIRED: W(
        "缓学到期：缓学期已满，儿童仍在园或可能未入学。",
        "Deferral expired: the deferral ran out; the child may be out of school.",
        "请联系家长，办理续缓或入学。", "Contact the family: renew the deferral or enrol."),
    Category.NOT_IN_ROSTER: W(
        "无学前学籍：小学为没有学前学籍的儿童新建了学籍。",
        "Not in roster: a school created a record for a child without a preschool one.",
        "仅供知悉，无需处理。", "Information only."),
}  # fmt: skip

SET_ASIDE_WORDING: dict[SetAsideReason, Wording] = {
    SetAsideReason.IDENTITY_CONFLICT: W(
        "身份冲突：小学学籍系统已用该身份证件登记了另一个学籍号，不会再建第二个。",
        "Identity conflict: the registry holds this identity under another number.",
        "由县级核实是否一人多号，处理后办结。",
        "Check for one person under two numbers; resolve with a note."),
    SetAsideReason.BAD_SOURCE_FILE: W(
        "档案文件有误：取得的档案大小或摘要与毕业事件不符。",
        "Bad source file: the fetched file does not match the event's size or digest.",
        "请幼儿园重新出具档案，然后重试。", "Have the kindergarten re-issue it, then retry."),
    SetAsideReason.SOURCE_FILE_MISSING: W(
        "档案文件缺失：学前系统找不到该档案（404）。",
        "Source file missing: the preschool registry does not have the file (404).",
        "请幼儿园补传档案，然后重试。", "Have the kindergarten upload it again, then retry."),
    SetAsideReason.ALREADY_ENROLLED: W(
        "已在其他年级入学：小学学籍系统显示该儿童已按另一入学年份注册。",
        "Already enrolled: the child is enrolled for another entry year.",
        "请与学校核实入学年份，处理后办结。",
        "Check the entry year with the school; resolve with a note."),
    SetAsideReason.REGISTRY_REJECTED: W(
        "小学学籍系统拒收：登记信息不符合接口要求（422）。",
        "Registry rejected: the registry refused the intake as invalid (422).",
        "请核对儿童信息（姓名、证件、出生日期）后重试。",
        "Check the child's details, then retry."),
    SetAsideReason.FILE_REJECTED: W(
        "档案被拒收：小学学籍系统拒收档案文件。",
        "File rejected: the registry refused the record file.",
        "请核对档案后重试。", "Check the file, then retry."),
    SetAsideReason.SCHOOL_MISMATCH: W(
        "学校不一致：报到学校与小学学籍系统记录的录取学校不同。",
        "School mismatch: the school that reported the arrival is not the admitting one.",
        "请与两所学校核实录取情况，处理后办结。",
        "Check the admission with both schools; resolve with a note."),
    SetAsideReason.INTERNAL_ERROR: W(
        "衔接平台内部错误：多次处理该儿童均失败。",
        "Internal error: the bridge failed on this child again and again.",
        "请通知技术人员；修复后重试。", "Tell the engineers; retry after the fix."),
}  # fmt: skip

# Why a message was set aside as no event (consumers, schemas.events, dead-lettering).
PARKED_WORDING: dict[str, Wording] = {
    "not_json": W("不是 JSON：消息内容无法按 JSON 读取。",
                  "Not JSON: the body cannot be read as JSON."),
    "invalid_envelope": W("信封不合规：不是 CloudEvents 1.0 事件。",
                          "Invalid envelope: not a CloudEvents 1.0 event."),
    "invalid_data": W("事件数据不合规：data 部分不符合接口约定。",
                      "Invalid data: the event's data breaks the contract."),
    "unknown_type": W("未知事件类型。", "Unknown event type."),
    "content_type": W("媒体类型不被接受（仅接受 UTF-8 的 JSON）。",
                      "Content type not accepted (JSON in UTF-8 only)."),
    "subject_mismatch": W("事件主题（subject）与数据中的学籍号不一致。",
                          "The subject is not the student number the data names."),
    "too_large": W("消息过大。", "The message is too large."),
    "digest_mismatch": W("摘要不一致。", "Digest mismatch."),
    "invalid_event": W("不是合规事件。", "Not a valid event."),
    "delivery_limit": W("多次投递均处理失败，已搁置。",
                        "The bridge failed to process it on every delivery."),
    "rejected": W("被衔接平台退回（是合规事件，可重试）。",
                  "Dead-lettered by the bridge (it is an event: retry it)."),
    "undecodable": W("无法解码。", "The bridge could not decode it."),
    "unexplained": W("进入搁置队列但没有原因。", "Arrived in the parking queue without a reason."),
    "expired": W("消息在队列中过期。", "The message expired in the queue."),
    "maxlen": W("队列已满被挤出。", "Pushed out of a full queue."),
}  # fmt: skip
PARKED_ADVICE = W(
    "",
    "",
    "修正发布方后重试；确认无需处理时填写说明办结。",
    "Retry once the publisher is fixed; or resolve with a note.",
)

PHASE_WORDING: dict[Phase, Wording] = {
    Phase.WAITING: W("等待毕业", "Waiting for graduation"),
    Phase.RECEIVED: W("已收到毕业事件", "Graduation received"),
    Phase.FILE_FETCHED: W("已取得档案", "Record file fetched"),
    Phase.REGISTERED: W("已在小学注册", "Registered at the primary registry"),
    Phase.FILE_DELIVERED: W("档案已送达", "Record file delivered"),
    Phase.ENROLLED: W("已报到入学（移交完成）", "Enrolled (hand-over complete)"),
    Phase.WITHDRAWING: W("正在撤回注册", "Withdrawing the registration"),
    Phase.DEFERRED: W("缓学留园", "Deferred (stays in kindergarten)"),
    Phase.CANCELLED: W("学籍已注销", "Record cancelled"),
    Phase.SET_ASIDE: W("已搁置，待人工处理", "Set aside for an operator"),
}  # fmt: skip

RETRY_OUTCOMES: dict[str, Wording] = {
    "released": W("已重新排队处理", "released to be driven again"),
    "skipped_busy": W("正在处理中，未重试", "skipped: being driven right now"),
    "republished": W("已重新发布", "republished"),
}

EVENT_TYPES: dict[str, Wording] = {
    "child.graduated": W("毕业", "graduated"),
    "child.deferred": W("缓学留园", "deferred"),
    "child.number_assigned": W("赋正式学籍号", "number assigned"),
    "child.key_info_changed": W("关键信息修改", "key information changed"),
    "child.cancelled": W("学籍注销", "cancelled"),
}

DETAIL_LABELS: dict[str, Wording] = {
    "deadline": W("移交期限", "hand-over due"),
    "pull_by": W("接收档案期限", "file due to be pulled by"),
    "report_by": W("报到期限", "arrival due by"),
    "set_aside_reason": W("搁置原因", "set aside because"),
    "registry_answer": W("登记系统答复", "registry answered"),
    "deferred_until": W("缓学至", "deferred until"),
    "current_number": W("现学籍号", "current number"),
    "other_numbers": W("其他学籍号", "other numbers"),
    "existing_student_number": W("已有学籍号", "existing number"),
    "personal_data_erased": W("个人信息已按保留期限删除", "personal data erased (retention)"),
    "provisional": W("暂定期限（无官方日历）", "provisional (no official calendar)"),
    "error": W("错误类型", "error type"),
    "status": W("状态码", "status"),
    "code": W("答复代码", "answer code"),
}  # fmt: skip

KINDS = {
    "category": CATEGORY_WORDING,
    "set_aside": SET_ASIDE_WORDING,
    "parked": PARKED_WORDING,
    "phase": PHASE_WORDING,
    "retry": RETRY_OUTCOMES,
    "event": EVENT_TYPES,
    "detail": DETAIL_LABELS,
}


def say(kind: str, code: str | None) -> Wording:
    """The wording of *code* of *kind* (a key of KINDS); an unknown code as itself."""
    if not code:
        return W("—", "—")
    table: dict[object, Wording] = KINDS.get(kind, {})  # type: ignore[assignment]
    found = table.get(code)
    return found if found is not None else W(f"未知代码 {code}", f"unknown code {code}")


def china_time(moment: dt.datetime | None) -> str:
    """A moment as a China clock reads it, the zone shown (China has one, no DST)."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") + " 北京时间 (UTC+8)"


def waited(days: int) -> str:
    """Working days waited, as a label."""
    return f"{days} 个工作日 working days"
