"""The master's allocator: DRF-ordered offers from unallocated resources, refuse filters,
suppressed roles, offer timeouts. A mixin of `master.Master`; runs under the cluster lock."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from localmesos.frameworks import Framework, Offer
from localmesos.resources import Resources

if TYPE_CHECKING:
    from localmesos.agent import Agent

log = logging.getLogger("localmesos.master")


class Allocator:
    def allocate_soon(self) -> None:
        if self._alloc_timer is None:
            self._alloc_timer = self.cluster.timers.call_later(0.005, self._allocate)

    def _agents(self) -> list[Agent]:
        return sorted(self.agents.values(), key=lambda a: a.index)

    def _offered(self, agent: Agent) -> Resources:
        total = Resources()
        for offer in self.offers.values():
            if offer.agent is agent:
                total = total + offer.resources
        return total

    def unallocated(self, agent: Agent) -> Resources:
        return agent.total - agent.used() - self._offered(agent)

    def _offer_role(self, fw: Framework) -> str | None:
        for role in fw.roles:
            if role not in fw.suppressed:
                return role
        return None

    def _allocate(self) -> None:
        self._alloc_timer = None
        now = time.monotonic()
        frameworks = [fw for fw in self.frameworks.values()
                      if fw.connected and self._offer_role(fw) is not None]
        for fw in self.frameworks.values():
            fw.filters = [f for f in fw.filters if f[2] > now]
        if not frameworks:
            return
        agents = self._agents()
        cluster_total = Resources()
        for a in agents:
            cluster_total = cluster_total + a.total
        held = {fw.id: self._held(fw) for fw in frameworks}
        batches: dict[str, list[Offer]] = {}
        for agent in agents:
            if agent.disconnected:  # nothing is offered from it
                continue
            avail = self.unallocated(agent)
            if not avail.allocatable():
                continue
            candidates = [fw for fw in frameworks
                          if not any(aid == agent.id and res.contains(avail)
                                     for aid, res, _ in fw.filters)]
            if not candidates:
                continue
            fw = min(candidates, key=lambda f: (self._share(held[f.id], cluster_total), f.seq))
            role = self._offer_role(fw) or "*"
            oid = f"{self.id}-O{self._offer_seq}"
            self._offer_seq += 1
            offer = Offer(oid, fw, agent, avail, role)
            self.offers[oid] = offer
            fw.offers[oid] = offer
            held[fw.id] = held[fw.id] + avail
            if self.opts.offer_timeout and self.opts.offer_timeout > 0:
                offer.timer = self.cluster.timers.call_later(self.opts.offer_timeout,
                                                             self._offer_expired, offer)
            batches.setdefault(fw.id, []).append(offer)
        for fid, offers in batches.items():
            self.frameworks[fid].send({"type": "OFFERS",
                                       "offers": {"offers": [o.proto() for o in offers]}})
            log.debug("offered %s to %s", [o.id for o in offers], fid)

    def _held(self, fw: Framework) -> Resources:
        total = Resources()
        for t in fw.tasks.values():
            if not t.terminal:
                total = total + t.resources
        for o in fw.offers.values():
            total = total + o.resources
        return total

    @staticmethod
    def _share(held: Resources, total: Resources) -> float:
        shares = [held.scalars.get(k, 0) / v for k, v in total.scalars.items()
                  if k in ("cpus", "mem", "disk") and v > 0]
        return max(shares, default=0.0)

    def _remove_offer(self, offer: Offer) -> None:
        self.offers.pop(offer.id, None)
        offer.framework.offers.pop(offer.id, None)
        if offer.timer is not None:
            offer.timer.cancel()
            offer.timer = None

    def _offer_expired(self, offer: Offer) -> None:
        if self.offers.get(offer.id) is not offer:
            return
        self._remove_offer(offer)
        offer.framework.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})
        log.info("offer %s to %s rescinded after %.1fs", offer.id, offer.framework.id,
                 self.opts.offer_timeout)
        self.allocate_soon()
