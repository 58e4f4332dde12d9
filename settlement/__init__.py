"""Settlement: a double-entry, hash-chained ledger and the mechanisms that post to it.

Entry points other packages call:

- :func:`record_readings` — the controllers hand over :class:`~microgrid.readings.MeterReading`
  snapshots;
- :func:`settle_hour` / :func:`settle_pending` — hourly settlement, late corrections and
  retries with backoff; with a :class:`StoragePolicy` the battery settles as a producer
  (WATT tokens, :mod:`settlement.storage`);
- :func:`read_credit` / :func:`credit_for_dispatch` — relay decisions for the controller
  and dispatch's ``credit`` argument;
- :func:`stake_totals` — dispatch's ``stakes`` argument;
- :func:`handle_webhook` — the payment processor's calls;
- :class:`SqliteLedgerStore` — the default :class:`LedgerStore`.
"""

from settlement.alarms import Alarm, AlarmKind, AlarmRecord, Severity
from settlement.fiat import (
    FiatConfig,
    Topup,
    WebhookRejectedError,
    confirm_withdrawal,
    handle_webhook,
    reserve_withdrawal,
    sign_webhook,
    void_withdrawal,
)
from settlement.funding import NotOwnerError, fund_meter, withdraw
from settlement.hourly import EnergyStatus, HourPlan, MeterEnergy, hourly_energy, plan_hour
from settlement.ledger import (
    Asset,
    Batch,
    BatchRejectedError,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerError,
    PostedBatch,
    Transfer,
    VerifyReport,
    meter_account,
    user_account,
)
from settlement.prepaid import (
    CreditPolicy,
    CreditState,
    CreditStatus,
    credit_alarms,
    credit_for_dispatch,
    credit_statuses,
    read_credit,
)
from settlement.settle import (
    HourSettlement,
    RecordOutcome,
    SettlementConfig,
    WattBalanceError,
    record_readings,
    settle_hour,
    settle_hours,
    settle_pending,
    storage_policy_for,
)
from settlement.sqlite_store import SqliteLedgerStore
from settlement.staking import (
    BusinessOutcome,
    StakingPolicy,
    issue_tokens,
    place_stake,
    settle_round,
    stake_totals,
)
from settlement.storage import StorageHour, StoragePolicy, plan_storage
from settlement.store import LedgerStore

__all__ = [
    "Alarm",
    "AlarmKind",
    "AlarmRecord",
    "Asset",
    "Batch",
    "BatchRejectedError",
    "BusinessOutcome",
    "CreditPolicy",
    "CreditState",
    "CreditStatus",
    "EnergyStatus",
    "FiatConfig",
    "HourPlan",
    "HourSettlement",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "LedgerError",
    "LedgerStore",
    "MeterEnergy",
    "NotOwnerError",
    "PostedBatch",
    "RecordOutcome",
    "SettlementConfig",
    "Severity",
    "SqliteLedgerStore",
    "StakingPolicy",
    "StorageHour",
    "StoragePolicy",
    "Topup",
    "Transfer",
    "VerifyReport",
    "WattBalanceError",
    "WebhookRejectedError",
    "confirm_withdrawal",
    "credit_alarms",
    "credit_for_dispatch",
    "credit_statuses",
    "fund_meter",
    "handle_webhook",
    "hourly_energy",
    "issue_tokens",
    "meter_account",
    "place_stake",
    "plan_hour",
    "plan_storage",
    "read_credit",
    "record_readings",
    "reserve_withdrawal",
    "settle_hour",
    "settle_hours",
    "settle_pending",
    "settle_round",
    "sign_webhook",
    "stake_totals",
    "storage_policy_for",
    "user_account",
    "void_withdrawal",
    "withdraw",
]
