"""Making accounts and keys for tests, through the same service the API and CLI use."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from timo_hub.accounts import key_format, service, store
from timo_hub.accounts.principal import Principal
from timo_hub.platform.runtime import Runtime

_counter = itertools.count()


@dataclass(frozen=True)
class Customer:
    """An account and one working key."""

    account: store.Account
    key_id: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authenticate as this customer."""
        return {"Authorization": f"Bearer {self.secret}"}


def new_customer(
    runtime: Runtime, plan: str = "developer", *, burst: service.LimitSetting | None = None
) -> Customer:
    """A fresh account on `plan` with its first key; `burst` sets its own burst limit (e.g.
    `"unlimited"` for a test that spends a month's calls faster than the plan's burst window
    admits)."""
    account, issued = service.create_account(runtime, f"user{next(_counter)}@example.com", plan)
    if burst is not None:
        account = service.set_limits(runtime, account.id, {"burst": burst})
    return Customer(account, str(issued.key.id), issued.secret)


def principal_of(runtime: Runtime, customer: Customer) -> Principal:
    """Who the customer's key authenticates as (for driving the quota without HTTP)."""
    with runtime.database.connection() as conn:
        principal = store.find_principal(
            conn, key_format.hash_key(customer.secret, runtime.settings.key_pepper)
        )
    assert principal is not None
    return principal
