"""The JobStore contract as a reusable test suite: every store backend must pass all of it.

Subclass ``StoreContract`` in a ``Test...`` class, implement ``open_store`` (fresh, empty
storage per test; every call within a test opens that same storage, as a second process
would) and set ``invalid_job_error``. The class name carries no ``Test`` prefix, so pytest
collects the suite only through a backend's subclass. The parts live in contract_*.py.
"""

from __future__ import annotations

from tests.store.contract_base import WEEK_S, ContractBase
from tests.store.contract_dead import DeadContract
from tests.store.contract_enqueue import EnqueueContract, EnqueueManyContract
from tests.store.contract_erase import EraseContract
from tests.store.contract_lease import LeaseContract
from tests.store.contract_lifecycle import LifecycleContract
from tests.store.contract_views import ViewContract

__all__ = ["WEEK_S", "ContractBase", "StoreContract"]


class StoreContract(
    EnqueueContract, EnqueueManyContract, LeaseContract, DeadContract, ViewContract, LifecycleContract, EraseContract
):
    """Every behaviour base.py promises, plus the rules its docstrings leave to the implementation."""
