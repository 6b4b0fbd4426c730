"""The world the YouTube double serves: what YouTube holds for each search term, deterministic.

Each term has a *pool*: the things YouTube's index returns for it, in relevance order, each one a
video, a Short, a live or upcoming stream, a channel or a playlist, with a title (most contain the
term, some only loosely relate, as real results do), a duration, an upload age, a view count and a
rating, all drawn from a hash of (seed, term, rank) so every run and every process sees the same
world. A query is the term plus YouTube's own filters (``sp``: sort order, upload date, type,
duration); it answers the pool filtered and sorted that way, cut at :attr:`World.depth` results
however deep it is paged: YouTube's behaviour that yt-dlp users report (500-1,000 results per
query, yt-dlp#9264, #10039, ytdl-org#30795). Two queries of one term therefore return overlapping
subsets of one pool, and only splitting a term into many queries reaches deeper than one cap.

A term can alias another (``aliases``): its pool is the other's (a synonym finds the same videos).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

VIDEO, SHORT, LIVE, UPCOMING, CHANNEL, PLAYLIST = "video", "short", "live", "upcoming", "channel", "playlist"
KINDS = (VIDEO, SHORT, LIVE, UPCOMING, CHANNEL, PLAYLIST)
NOT_VIDEOS = (CHANNEL, PLAYLIST)  # what YouTube's "type: video" filter leaves out

# sp's protobuf: field 1 = sort (0 relevance, 1 rating, 2 upload date, 3 view count), field 2 = filters:
# 1 upload date (1 last hour, 2 today, 3 this week, 4 this month, 5 this year), 2 type (1 video,
# 2 channel, 3 playlist), 3 duration (1 under 4 min, 2 over 20 min, 3 4-20 min)
UPLOAD_WINDOW_DAYS = {1: 1 / 24, 2: 1.0, 3: 7.0, 4: 31.0, 5: 366.0}
DURATION_BUCKETS = {1: (0.0, 240.0), 3: (240.0, 1200.0), 2: (1200.0, float("inf"))}
TYPES = {1: (VIDEO, SHORT, LIVE, UPCOMING), 2: (CHANNEL,), 3: (PLAYLIST,)}


@dataclass(frozen=True)
class Item:
    """One search result as YouTube's index holds it."""

    id: str  # 11-character video id; UC... for a channel, PL... for a playlist
    kind: str
    title: str
    duration: float | None  # seconds; None for streams, channels and playlists
    age_days: float  # since upload (or since the stream was scheduled)
    views: int
    rating: float
    rank: int  # relevance rank in the term's pool

    @property
    def is_video(self) -> bool:
        return self.kind not in NOT_VIDEOS


@dataclass(frozen=True)
class Filters:
    """A query's ``sp`` decoded: sort order and the filters of YouTube's search page."""

    sort: int = 0
    upload: int = 0
    type: int = 0
    duration: int = 0

    @classmethod
    def of(cls, sp: str | None) -> Filters:
        if not sp:
            return cls()
        data = base64.b64decode(sp + "=" * (-len(sp) % 4))
        top = _fields(data)
        inner = _fields(top.get(2, b"")) if isinstance(top.get(2), bytes) else {}
        return cls(sort=top.get(1, 0), upload=inner.get(1, 0), type=inner.get(2, 0), duration=inner.get(3, 0))

    def admits(self, item: Item) -> bool:
        if self.type and item.kind not in TYPES.get(self.type, ()):
            return False
        if self.upload and item.age_days > UPLOAD_WINDOW_DAYS[self.upload]:
            return False
        if self.duration:
            low, high = DURATION_BUCKETS[self.duration]
            if item.duration is None or not low <= item.duration < high:
                return False
        return True


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> dict[int, int | bytes]:
    """A protobuf message's varint and length-delimited fields (what sp holds)."""
    fields: dict[int, int | bytes] = {}
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number], at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            fields[number], at = data[at:at + size], at + size
        else:
            raise ValueError(f"sp: unsupported wire type {wire}")
    return fields


def _unit(*parts) -> float:
    """A uniform number in [0, 1) from the parts (the world's only randomness)."""
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def _token(*parts, size: int) -> str:
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode()).digest() * 3
    return base64.urlsafe_b64encode(digest).decode()[:size]


@dataclass
class World:
    """What YouTube holds (``pools``: term -> pool size; other terms get ``default_pool``) and how
    deep it answers one query (``depth``). ``mix``: the share of each kind among results; ``loose``:
    the share of titles without the term."""

    pools: dict[str, int] = field(default_factory=dict)
    default_pool: int = 100
    depth: int = 600
    page: int = 20  # results per response, as YouTube's web client gets them
    seed: str = "youtube"
    aliases: dict[str, str] = field(default_factory=dict)
    mix: dict[str, float] = field(default_factory=lambda: {
        SHORT: 0.15, LIVE: 0.02, UPCOMING: 0.01, CHANNEL: 0.02, PLAYLIST: 0.03})
    loose: float = 0.25
    shelf_every: int = 5  # every n-th Short (by rank) comes in a Shorts shelf, without its length; 0: none
    _pools: dict[str, list[Item]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def pool(self, term: str) -> list[Item]:
        """Everything YouTube has for ``term``, in relevance order."""
        term = self.aliases.get(term, term)
        if term not in self._pools:
            size = self.pools.get(term, self.default_pool)
            self._pools[term] = [self.item(term, rank) for rank in range(size)]
        return self._pools[term]

    def item(self, term: str, rank: int) -> Item:
        draw = _unit(self.seed, term, rank, "kind")
        kind, edge = VIDEO, 0.0
        for name, share in self.mix.items():
            edge += share
            if draw < edge:
                kind = name
                break
        u = lambda what: _unit(self.seed, term, rank, what)  # noqa: E731
        loose = u("loose") < self.loose
        if kind == CHANNEL:
            ident, title = "UC" + _token(self.seed, term, rank, size=22), f"{term.title()} World {rank}"
        elif kind == PLAYLIST:
            ident, title = "PL" + _token(self.seed, term, rank, size=32), f"Best of {term} - playlist {rank}"
        else:
            ident = _token(self.seed, term, rank, size=11)
            title = f"Amazing footage, clip {rank}" if loose else f"My {term} video #{rank}"
        duration = None
        if kind == SHORT:
            duration = float(5 + int(u("duration") * 55))
        elif kind == VIDEO:
            duration = float(int(10 ** (0.5 + 3.4 * u("duration"))))  # 3 s to about 2 h
        return Item(id=ident, kind=kind, title=title, duration=duration, age_days=10 ** (6 * u("age") - 2),
                    views=int(10 ** (7 * u("views"))), rating=u("rating"), rank=rank)

    def results(self, term: str, sp: str | None) -> list[Item]:
        """A query's answer: the pool filtered and sorted as ``sp`` asks, at most :attr:`depth` deep."""
        filters = Filters.of(sp)
        found = [item for item in self.pool(term) if filters.admits(item)]
        if filters.sort == 1:
            found.sort(key=lambda i: -i.rating)
        elif filters.sort == 2:
            found.sort(key=lambda i: i.age_days)
        elif filters.sort == 3:
            found.sort(key=lambda i: -i.views)
        return found[:self.depth]
