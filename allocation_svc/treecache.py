"""Shortest-path trees shared by every worker through Redis, with a small in-process LRU in
front: a tree computed by one gunicorn worker is not computed again by the next."""

from __future__ import annotations

import io
import logging

import numpy as np

from allocation_svc.roadgraph import LRUTreeCache, SiteTree

log = logging.getLogger(__name__)


class RedisTreeCache:
    def __init__(self, redis, namespace: str, ttl_s: int = 3600, local: int = 16):
        self.redis = redis
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.local = LRUTreeCache(local)

    def _key(self, key: tuple[int, int]) -> str:
        return f"emsupply:tree:{self.namespace}:{key[0]}:{key[1]}"

    def get(self, key: tuple[int, int]) -> SiteTree | None:
        tree = self.local.get(key)
        if tree is not None:
            return tree
        try:
            raw = self.redis.get(self._key(key))
        except Exception as exc:  # Redis down: compute instead of failing the plan
            log.warning("tree cache unavailable: %s", exc)
            return None
        if raw is None:
            return None
        with np.load(io.BytesIO(raw)) as arrays:
            tree = SiteTree(int(arrays["version"]), int(arrays["site"]), float(arrays["limit"]),
                            arrays["minutes"], arrays["predecessors"])
        self.local.put(key, tree)
        return tree

    def put(self, key: tuple[int, int], tree: SiteTree) -> None:
        self.local.put(key, tree)
        buffer = io.BytesIO()
        np.savez(buffer, version=tree.version, site=tree.site, limit=tree.limit,
                 minutes=tree.minutes, predecessors=tree.predecessors)
        try:
            self.redis.set(self._key(key), buffer.getvalue(), ex=self.ttl_s)
        except Exception as exc:
            log.warning("tree cache unavailable: %s", exc)
