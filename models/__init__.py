"""SQLModel tables, one module per domain. Importing this package registers them all."""

from sqlmodel import SQLModel

from models.access import AuthSession, Credential, RateLimitCounter, RecoveryCode, RefreshToken
from models.audit import AuditEntry
from models.autopay import AutopayRule, AutopayRun
from models.bonus import BonusAccount, BonusEntry, BonusReward
from models.catalog import Region, ServiceOption, Tariff
from models.contract import Contract, ContractOption
from models.events import Event, WebhookDelivery, WebhookSubscription, WebhookSubscriptionEvent
from models.money import (
    BillingCharge,
    LedgerEntry,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PromisedPayment,
    Receipt,
    Refund,
)
from models.notifications import NotificationPreference, ReminderMark
from models.outbox import OutboxMessage
from models.pause import ContractPause, SocialAccessGrant
from models.staff import StaffUser
from models.subscriber import Subscriber
from models.support import SupportRequest
from models.tv import (
    Channel,
    ContractPersonalChannel,
    ContractTvPackage,
    MultiroomDevice,
    TvPackage,
    TvPackageChannel,
)

metadata = SQLModel.metadata

__all__ = [
    "AuditEntry",
    "AuthSession",
    "AutopayRule",
    "AutopayRun",
    "BillingCharge",
    "BonusAccount",
    "BonusEntry",
    "BonusReward",
    "Channel",
    "Contract",
    "ContractOption",
    "ContractPause",
    "ContractPersonalChannel",
    "ContractTvPackage",
    "Credential",
    "Event",
    "LedgerEntry",
    "MultiroomDevice",
    "NotificationPreference",
    "OutboxMessage",
    "Payment",
    "PaymentEvent",
    "PaymentMethod",
    "PromisedPayment",
    "RateLimitCounter",
    "Receipt",
    "RecoveryCode",
    "RefreshToken",
    "Refund",
    "Region",
    "ReminderMark",
    "ServiceOption",
    "SocialAccessGrant",
    "StaffUser",
    "Subscriber",
    "SupportRequest",
    "Tariff",
    "TvPackage",
    "TvPackageChannel",
    "WebhookDelivery",
    "WebhookSubscription",
    "WebhookSubscriptionEvent",
    "metadata",
]
