"""Named domain exceptions. The web layer maps them to HTTP answers in one table
(:mod:`waybill.web.errors`); the domain itself knows nothing of HTTP.

Messages are Chinese (they reach merchants and staff) and never contain submitted values.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class; ``field`` names the offending input path, if any."""

    default_message = "请求无法处理"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)


class ValidationFailed(DomainError):
    default_message = "字段值无效"


class InvalidRegion(ValidationFailed):
    """A province, city or district not in the administrative divisions (GB/T 2260), or not in its parent."""

    default_message = "行政区划无效"


class NotFound(DomainError):
    """Unknown, foreign and unauthorised objects all raise this (or a subclass): same answer."""

    default_message = "对象不存在"


class ShipmentNotFound(NotFound):
    pass


class WebhookNotFound(NotFound):
    """A webhook endpoint that does not exist, was removed, or is another merchant's."""


class AlertNotFound(NotFound):
    """An alert id nobody raised."""


class TokenRevoked(NotFound):
    pass


class Conflict(DomainError):
    default_message = "与当前状态冲突"


class PersonalDataDestroyed(DomainError):
    """The shipment's (or the party's) personal data was destroyed: it can never be read again."""

    default_message = "该运单的个人信息已按保存期限或本人请求销毁"


class RequestAlreadyOpen(Conflict):
    """A data subject's request of this type on this party is still open: one at a time."""

    default_message = "您已有一项同类申请正在处理，请等待处理结果"


class LegallyHeld(Conflict):
    """The shipment is under a legal hold: its personal data may not be destroyed until the hold is released."""

    default_message = "该运单处于法律保全期间，个人信息暂不能删除"


class InDelivery(Conflict):
    """A deletion of personal data the parcel still needs to reach its recipient."""

    default_message = "包裹仍在寄递中，个人信息在合同履行完毕前不能删除"


class IdempotencyConflict(Conflict):
    default_message = "同一 Idempotency-Key 已用于不同的请求内容"


class DuplicateMerchantOrder(Conflict):
    default_message = "该商户订单号已存在"


class SandboxShipment(Conflict):
    """A shipment made with a test-mode API key: it never reaches a printer or a courier."""

    default_message = "测试模式运单不会打印或派送"


class ReprintLimitReached(Conflict):
    default_message = "该运单重打次数已达上限"


class NotApproved(Conflict):
    """A privacy officer's request that another officer has not approved yet (four eyes)."""

    default_message = "该申请尚未经另一名隐私官批准"


class InvalidStatusTransition(Conflict):
    default_message = "当前状态不允许此操作"


class PickupLocked(Conflict):
    """Too many wrong pickup codes for this shipment: handover is locked until a dispatcher resends a code."""

    default_message = "取件码错误次数过多，当面签收已锁定；请联系站点调度员重新发送取件码"


class PickupCodeUnavailable(Conflict):
    """The recipient has no pickup code to give (a landline cannot receive the SMS, or sending it failed)."""

    default_message = "收件人未收到取件码（固定电话或短信未发出）：请改投快递柜或驿站，或请调度员重发"


class PartnerAgreementExpired(Conflict):
    """The named partner's agreement ended before today (Asia/Shanghai): no parcel or data goes to it."""

    default_message = "该合作方协议已过期，不能交付"


class AlertResolved(Conflict):
    """The alert was resolved already: a resolution is recorded once."""

    default_message = "该告警已处理"


class AuthenticationFailed(DomainError):
    default_message = "身份验证失败"


class InvalidCode(AuthenticationFailed):
    """A data subject's challenge code that is wrong, expired, used or exhausted: one answer for all."""

    default_message = "验证码错误或已失效"


class PermissionDenied(DomainError):
    default_message = "无权执行此操作"


class ObligationsLapsed(PermissionDenied):
    """A staff member whose confidentiality agreement or training is older than WAYBILL_TRAINING_VALID_DAYS asked
    for personal data: refused until `waybill users attest` renews them."""

    default_message = "保密承诺或个人信息保护培训已过期，完成培训并重新确认后方可访问个人信息"


class RateLimited(DomainError):
    default_message = "请求过于频繁，请稍后重试"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """Something the request needs is down for now: refused (``503``) with ``retry_after`` seconds to wait."""

    def __init__(self, retry_after: float = 5.0) -> None:
        super().__init__()
        self.retry_after = retry_after


class LimitsUnavailable(Unavailable):
    """The store of the shared limits (Redis) cannot be reached: the request is refused, not let through unlimited
    (a limit counted in each process would multiply by the number of processes)."""

    default_message = "限流计数服务（Redis）暂不可用，请稍后重试"


class AuditWalkFailed(Unavailable):
    """A walker process of ``audit verify`` failed (it could not reach the database, or died): the log was not
    verified, which is neither a sound nor a broken log; try again (``503``)."""

    default_message = "审计日志校验进程失败，请稍后重试"


class TooManyConcurrentRequests(RateLimited):
    """The caller already has as many heavy requests in flight as allowed; refused at once, not queued."""

    default_message = "同时进行的批量请求过多，请等待前一个完成后重试"

    def __init__(self) -> None:
        super().__init__(1.0)
