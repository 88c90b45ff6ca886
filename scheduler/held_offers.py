"""Offers kept for job slots about to fall due, instead of declined and revived again.

A job run recorded at its slot's instant used to wait for a REVIVE, the master's allocation
and an offer (and a REVIVE every round cleared every filter, so each round had every agent
offered, placed and mostly declined). While a job's next slot falls due within
`HOLD_AHEAD_SECONDS`, the worker keeps the offers it did not use (and accepts job runs with
`refuse_seconds: 0`, so what an ACCEPT leaves of an offer comes straight back), and the next
jobs round launches on them without a REVIVE. An offer is held at most `HOLD_MAX_SECONDS`
(then declined with the usual filter); a rescinded offer is forgotten, and so is every held
offer when the subscription ends (the master forgot them)."""

from __future__ import annotations

import time
from typing import Any

Doc = dict[str, Any]

HOLD_AHEAD_SECONDS = 1.0   # hold while a job slot falls due within this
HOLD_MAX_SECONDS = 2.0     # an offer held longer is declined


class HeldOffers:
    def __init__(self) -> None:
        self.offers: dict[str, tuple[Doc, float]] = {}  # offer id -> (offer, monotonic held at)
        # when the offers last taken were first held: one taken, left unused and kept again
        # keeps its age, so it is declined after HOLD_MAX_SECONDS however often it is tried
        self.taken: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.offers)

    def keep(self, offers: list[Doc]) -> None:
        now = time.monotonic()
        for offer in offers:
            oid = offer["id"]["value"]
            self.offers.setdefault(oid, (offer, self.taken.pop(oid, now)))

    def take(self) -> list[Doc]:
        """Every held offer (no longer held)."""
        self.taken = {oid: at for oid, (_, at) in self.offers.items()}
        offers, self.offers = [o for o, _ in self.offers.values()], {}
        return offers

    def drop(self, offer_id: str) -> None:
        self.offers.pop(offer_id, None)

    def expired(self, wanted: bool) -> list[Doc]:
        """The offers to decline now: those held too long, or all when none is wanted."""
        limit = time.monotonic() - HOLD_MAX_SECONDS
        gone = [oid for oid, (_, at) in self.offers.items() if not wanted or at < limit]
        return [self.offers.pop(oid)[0] for oid in gone]


def holding_wanted(next_slot_at: float, now: float) -> bool:
    """Whether a job slot falls due soon enough to keep offers for it."""
    return next_slot_at - now <= HOLD_AHEAD_SECONDS
