"""The road graph of one `graph_version`: a CSR snapshot of the `RoadTable` for fast searches.

Why a hand-built CSR and not networkx: one scipy Dijkstra is 10-20x faster than networkx's, and
building the CSR from the edge arrays is 20x cheaper than `nx.to_scipy_sparse_array` (see
MEASURED.md). The CSR holds the graph *transposed* (row = arc head, column = arc tail), so one
search from a site gives the minutes from every node TO that site, which is what allocation needs,
and one-way roads stay right.

Traps handled here: scipy's CSR builder sums parallel edges, so parallel arcs share one CSR
position whose weight is the cheapest open one; an explicit 0 is a free edge to scipy, so zero
minutes become `ZERO_MINUTES`; a closed road is `inf` at its position (no edge) so that road events
only rewrite a copy of the weights and the layout is shared by every version.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from allocation_svc.roadtable import STATUS_CODES, RoadTable

if TYPE_CHECKING:
    import networkx as nx

ZERO_MINUTES = 1e-9  # stands in for a 0-minute road: scipy reads an explicit 0 as no cost, fine,
# but keeping every open weight > 0 keeps "0 = nothing there" out of every later sum.
NO_PREDECESSOR = -9999  # scipy's marker in the predecessor array


class NoRoute(LookupError):
    """No open road joins the two nodes."""


class _IdIndex:
    """String id -> position, kept as two numpy arrays (hash, position) instead of a dict, so that
    a million ids cost 16 MB and no Python object per id. Python's str hash is stable within a
    process, which is all an in-memory index needs."""

    def __init__(self, ids: Sequence[str]) -> None:
        self._ids = ids
        hashes = np.fromiter((hash(s) for s in ids), dtype=np.int64, count=len(ids))
        self._order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[self._order]

    def get(self, key: str) -> int:
        """Position of `key`; KeyError when absent."""
        h = hash(key)
        i = int(np.searchsorted(self._hashes, h))
        while i < len(self._hashes) and self._hashes[i] == h:
            pos = int(self._order[i])
            if self._ids[pos] == key:
                return pos
            i += 1
        raise KeyError(key)

    def get_many(self, keys: Sequence[str | None]) -> np.ndarray:
        """Positions of `keys` (int64), -1 for an absent or None key."""
        if not len(self._hashes):
            return np.full(len(keys), -1, dtype=np.int64)
        hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
        at = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        pos = self._order[at]
        hit = (self._hashes[at] == hashes).tolist()
        ids = self._ids
        ok = [h and ids[p] == k for h, p, k in zip(hit, pos.tolist(), keys, strict=True)]
        out = np.where(ok, pos, -1)
        for k in np.flatnonzero(np.array(hit, dtype=bool) & ~np.array(ok, dtype=bool)):
            if keys[k] is not None:  # a hash collision: scan the run of equal hashes
                with suppress(KeyError):
                    out[k] = self.get(keys[k])
        return out


@dataclass(frozen=True)
class _Layout:
    """What every version of one road layout shares: the CSR structure and the arc bookkeeping.

    Arcs are numbered 0..E-1 for edges driven from->to and E.. for the reverse of two-way edges;
    `sorted_arc_edge` lists the edge of every arc in CSR position order, `pos_start` where each
    position's run of (parallel) arcs starts in it.
    """

    n: int
    indptr: np.ndarray  # int32, n + 1
    indices: np.ndarray  # int32, arc tail per position
    pos_key: np.ndarray  # int64 head * n + tail per position, sorted: finds a position fast
    pos_start: np.ndarray  # int64, positions + 1
    sorted_arc_edge: np.ndarray  # int64 edge index per arc, in position order
    edge_pos: np.ndarray  # int64 (E, 2): CSR position of each edge's forward and reverse arc (-1)
    nodes: _IdIndex
    edges: _IdIndex

    @classmethod
    def build(cls, table: RoadTable) -> _Layout:
        n, e = table.node_count, table.edge_count
        tail = np.asarray(table.edge_from, dtype=np.int64)
        head = np.asarray(table.edge_to, dtype=np.int64)
        two_way = np.flatnonzero(~np.asarray(table.oneway, dtype=bool))
        arc_tail = np.concatenate([tail, head[two_way]])
        arc_head = np.concatenate([head, tail[two_way]])
        arc_edge = np.concatenate([np.arange(e, dtype=np.int64), two_way])
        key = arc_head * n + arc_tail
        order = np.argsort(key, kind="stable")
        skey = key[order]
        new = np.ones(len(skey), dtype=bool)
        new[1:] = skey[1:] != skey[:-1]
        starts = np.flatnonzero(new)
        pos_key = skey[starts]
        arc_pos = np.empty(len(order), dtype=np.int64)
        arc_pos[order] = np.cumsum(new) - 1
        edge_pos = np.full((e, 2), -1, dtype=np.int64)
        edge_pos[:, 0] = arc_pos[:e]
        edge_pos[two_way, 1] = arc_pos[e:]
        counts = np.bincount(pos_key // max(n, 1), minlength=n) if n else np.zeros(0, np.int64)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            n=n,
            indptr=indptr.astype(np.int32),
            indices=(pos_key % max(n, 1)).astype(np.int32),
            pos_key=pos_key,
            pos_start=np.append(starts, len(order)).astype(np.int64),
            sorted_arc_edge=arc_edge[order],
            edge_pos=edge_pos,
            nodes=_IdIndex(table.node_ids),
            edges=_IdIndex(table.edge_ids),
        )


def _edge_minutes(table: RoadTable, edges: np.ndarray | None = None) -> np.ndarray:
    """RoadTable's travel minutes (of all edges, or just `edges`), 0 raised to ZERO_MINUTES."""
    if edges is not None:  # the same formula, on a table of just these edges
        table = replace(
            table,
            edge_ids=[table.edge_ids[i] for i in edges],
            **{
                name: getattr(table, name)[edges]
                for name in ("edge_from", "edge_to", "length_km", "road_class", "speed_kmh",
                             "oneway", "status", "speed_factor")
            },
        )
    return np.maximum(table.minutes(), ZERO_MINUTES)


@dataclass(frozen=True)
class SiteTree:
    """The fastest ways from every node to one site on one graph version (a reverse Dijkstra).

    Plain arrays, so that a shared (e.g. Redis) cache can hold it. A tree searched only up to
    `limit` minutes knows the nodes within it; the others read `inf` (farther or unreachable).
    """

    version: int
    site: int
    limit: float
    minutes: np.ndarray  # float64 per node: minutes to the site
    predecessors: np.ndarray  # int32 per node: next node toward the site, NO_PREDECESSOR if none

    @property
    def complete(self) -> bool:
        """True when `inf` really means "no open road"."""
        return math.isinf(self.limit)

    def path_from(self, node: int) -> list[int]:
        """Node indexes from `node` to the site along the fastest way; NoRoute if none known."""
        if not math.isfinite(self.minutes[node]):
            raise NoRoute(f"no open road from node {node} to node {self.site}")
        path, pred = [node], self.predecessors
        while node != self.site:
            node = pred.item(node)
            path.append(node)
        return path


class TreeCache(Protocol):
    """Where SiteTrees are kept, keyed by (graph version, site node index). The default is an
    in-process LRU; a Redis-backed one can be plugged in with the same two calls."""

    def get(self, key: tuple[int, int]) -> SiteTree | None: ...

    def put(self, key: tuple[int, int], tree: SiteTree) -> None: ...


class LRUTreeCache:
    """In-process LRU of SiteTrees (~12 MB each at a million nodes: size it accordingly)."""

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._trees: OrderedDict[tuple[int, int], SiteTree] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> SiteTree | None:
        with self._lock:
            tree = self._trees.get(key)
            if tree is not None:
                self._trees.move_to_end(key)
            return tree

    def put(self, key: tuple[int, int], tree: SiteTree) -> None:
        with self._lock:
            self._trees[key] = tree
            self._trees.move_to_end(key)
            while len(self._trees) > self.maxsize:
                self._trees.popitem(last=False)


@dataclass(frozen=True)
class Route:
    """One fastest route, ready for a shipment or `GET /routes`."""

    minutes: float
    distance_km: float
    path: list[str]  # node ids, from origin to destination
    edges: list[str]  # edge ids driven, in order
    coordinates: list[tuple[float, float]]  # (lon, lat) per node of `path`

    def geometry(self) -> dict:
        """The route as a GeoJSON LineString."""
        return {"type": "LineString", "coordinates": [list(c) for c in self.coordinates]}


class RoadGraph:
    """One version of the road network. Immutable: a road event makes a new version
    (`with_events`), so that everything derived from a version (SiteTrees, plans) stays true."""

    def __init__(
        self,
        table: RoadTable,
        version: int,
        cache: TreeCache | None = None,
        *,
        _layout: _Layout | None = None,
        _weights: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None,
    ) -> None:
        self.table = table
        self.version = version
        self.cache: TreeCache = cache if cache is not None else LRUTreeCache()
        self.searches = 0  # Dijkstra runs made by this instance (cache misses)
        self._layout = _layout if _layout is not None else _Layout.build(table)
        if _weights is None:
            minutes = _edge_minutes(table)
            data, pos_edge = self._position_weights(minutes)
            _weights = (minutes, data, pos_edge, float(np.sum(data, where=np.isfinite(data))))
        self._edge_min, self._data, self._pos_edge, self._open_total = _weights
        lay = self._layout
        self._csr = csr_array((self._data, lay.indices, lay.indptr), shape=(lay.n, lay.n))

    def _position_weights(self, minutes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per CSR position: the cheapest of its parallel arcs (minutes) and that arc's edge."""
        lay = self._layout
        starts = lay.pos_start[:-1]
        arc_min = minutes[lay.sorted_arc_edge]
        if not len(starts):
            return np.zeros(0), np.zeros(0, np.int64)
        data = np.minimum.reduceat(arc_min, starts)
        pos_edge = lay.sorted_arc_edge[starts].copy()
        for p in np.flatnonzero(np.diff(lay.pos_start) > 1):  # parallel roads: rare
            run = lay.sorted_arc_edge[lay.pos_start[p] : lay.pos_start[p + 1]]
            pos_edge[p] = run[np.argmin(minutes[run])]
        return data, pos_edge

    # ---- lookups -------------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return self._layout.n

    @property
    def csr(self) -> csr_array:
        """The transposed CSR snapshot (row = arc head): search it from a site to get minutes TO
        the site. Closed positions hold inf. Do not modify."""
        return self._csr

    def node_index(self, node_id: str) -> int:
        """Index of a node id; KeyError if the graph has no such node."""
        return self._layout.nodes.get(node_id)

    @property
    def layout(self) -> object:
        """What every version of this road layout shares: node indexes found in one hold for
        all of them."""
        return self._layout

    def node_indexes(self, node_ids: Sequence[str | None]) -> np.ndarray:
        """Indexes of many node ids at once (int64), -1 where unknown or None."""
        return self._layout.nodes.get_many(node_ids)

    def edge_minutes(self) -> np.ndarray:
        """Current travel minutes per edge (inf where closed); read-only view."""
        view = self._edge_min.view()
        view.flags.writeable = False
        return view

    @property
    def open_minutes_total(self) -> float:
        """Sum of all open arc minutes: an upper bound on the minutes of any fastest path."""
        return self._open_total

    # ---- road events ---------------------------------------------------------------------------

    def with_events(self, events: Iterable[tuple[str, str | int, float | None]]) -> RoadGraph:
        """A new RoadGraph (version + 1) with road events applied: (edge id, status "open" |
        "degraded" | "closed" or its code, speed factor in (0, 1] or None for 1).

        Only the touched CSR positions are rewritten, on a copy of the weights; the layout and the
        tree cache are shared (trees are keyed by version, so none of the old ones is ever reused).
        """
        lay = self._layout
        status = self.table.status.copy()
        factor = self.table.speed_factor.copy()
        touched: list[int] = []
        for edge_id, new_status, speed_factor in events:
            e = lay.edges.get(edge_id)
            code = STATUS_CODES[new_status] if isinstance(new_status, str) else int(new_status)
            if code not in STATUS_CODES.values():
                raise ValueError(f"unknown road status {new_status!r}")
            f = 1.0 if speed_factor is None else float(speed_factor)
            if not 0.0 < f <= 1.0:
                raise ValueError(f"speed_factor must be in (0, 1], got {speed_factor!r}")
            status[e], factor[e] = code, f
            touched.append(e)
        table = replace(self.table, status=status, speed_factor=factor)
        minutes = self._edge_min.copy()
        data, pos_edge = self._data.copy(), self._pos_edge.copy()
        total = self._open_total
        if touched:
            edges = np.unique(np.array(touched, dtype=np.int64))
            minutes[edges] = _edge_minutes(table, edges)
            positions = lay.edge_pos[edges].ravel()
            for p in np.unique(positions[positions >= 0]):
                run = lay.sorted_arc_edge[lay.pos_start[p] : lay.pos_start[p + 1]]
                best = int(np.argmin(minutes[run]))
                total -= data[p] if np.isfinite(data[p]) else 0.0
                data[p], pos_edge[p] = minutes[run[best]], run[best]
                total += data[p] if np.isfinite(data[p]) else 0.0
        return RoadGraph(
            table,
            self.version + 1,
            self.cache,
            _layout=lay,
            _weights=(minutes, data, pos_edge, float(total)),
        )

    # ---- searches ------------------------------------------------------------------------------

    def from_site(self, site: int, limit: float = math.inf) -> SiteTree:
        """Minutes and fastest next hop from every node TO `site` (one reverse Dijkstra), searched
        at least up to `limit` minutes. Served from the cache when this version already has a tree
        of this site reaching that far."""
        key = (self.version, int(site))
        tree = self.cache.get(key)
        if tree is not None and tree.limit >= limit:
            return tree
        minutes, pred = dijkstra(
            self._csr, directed=True, indices=int(site), return_predecessors=True, limit=limit
        )
        self.searches += 1
        tree = SiteTree(self.version, int(site), float(limit), minutes, pred)
        self.cache.put(key, tree)
        return tree

    def route_in(self, tree: SiteTree, from_node: int) -> Route:
        """The route from `from_node` to the tree's site, read off the tree (no new search)."""
        if tree.version != self.version:
            raise ValueError(f"tree of version {tree.version} used on version {self.version}")
        path = np.array(tree.path_from(int(from_node)), dtype=np.int64)
        edges = self._path_edges(path)
        table = self.table
        return Route(
            minutes=float(tree.minutes[from_node]),
            distance_km=float(table.length_km[edges].sum()),
            path=[table.node_ids[i] for i in path],
            edges=[table.edge_ids[i] for i in edges],
            coordinates=list(
                zip(table.node_lon[path].tolist(), table.node_lat[path].tolist(), strict=True)
            ),
        )

    def route(self, from_node: int | str, to_node: int | str) -> Route:
        """Fastest route between two nodes (indexes or ids) on this version; NoRoute if none."""
        src, dst = (
            self.node_index(x) if isinstance(x, str) else int(x) for x in (from_node, to_node)
        )
        tree = self.from_site(dst)
        if not math.isfinite(tree.minutes[src]):
            raise NoRoute(f"no open road from {from_node} to {to_node}")
        return self.route_in(tree, src)

    def distances_km(self, tree: SiteTree) -> np.ndarray:
        """Kilometres from every node to the tree's site along its fastest path (inf where the tree
        does not reach). Vectorised by pointer doubling: log2(hops) passes over the arrays."""
        n = self.node_count
        reached = np.isfinite(tree.minutes)
        nxt = np.where(reached, tree.predecessors, -1).astype(np.int64)
        nxt[tree.site] = -1
        has = nxt >= 0
        km = np.zeros(n)
        km[has] = self.table.length_km[self._step_edges(np.flatnonzero(has), nxt[has])]
        nodes = np.arange(n)
        nxt = np.where(has, nxt, nodes)  # the site and unreached nodes point at themselves (km 0)
        while True:  # invariant: km[i] = km from i to nxt[i]
            jump = nxt[nxt]
            if np.array_equal(jump, nxt):
                break
            km, nxt = km + km[nxt], jump
        return np.where(reached, km, np.inf)

    def _step_edges(self, tails: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """Edge driven on each step tail -> head (the cheapest of parallel roads)."""
        pos = np.searchsorted(self._layout.pos_key, heads * self._layout.n + tails)
        return self._pos_edge[pos]

    def _path_edges(self, path: np.ndarray) -> np.ndarray:
        return self._step_edges(path[:-1], path[1:])

    # ---- baselines -----------------------------------------------------------------------------

    def to_networkx(self) -> nx.DiGraph:
        """The open roads as a networkx DiGraph (nodes are node indexes, `weight` = minutes,
        `edge` = edge id), for baselines and cross-checks; slow at national scale."""
        import networkx as nx  # the test oracle only: not loaded when the service starts

        lay = self._layout
        open_pos = np.flatnonzero(np.isfinite(self._data))
        heads = lay.pos_key[open_pos] // max(lay.n, 1)
        tails = lay.pos_key[open_pos] % max(lay.n, 1)
        graph = nx.DiGraph()
        graph.add_nodes_from(range(lay.n))
        ids = self.table.edge_ids
        graph.add_edges_from(
            (int(t), int(h), {"weight": float(w), "edge": ids[e]})
            for t, h, w, e in zip(
                tails, heads, self._data[open_pos], self._pos_edge[open_pos], strict=True
            )
        )
        return graph
