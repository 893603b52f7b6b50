"""Deterministic synthetic account: one user and its public videos, kept sorted for O(log n) paging.
A multi-account sandbox holds one ``Account`` per user (see ``accounts``).

Videos are stored as compact slot objects (URLs and embeds are rendered on demand), so 100k videos
generate in well under a second and cost a few tens of MB. Each video has a hidden creation time in
milliseconds (``create_time_ms``, strictly unique); the API shows only its second (``create_time``) and the
cursor compares milliseconds (``create_time_ms < cursor``), as TikTok's does. Generated videos are at least
60 s apart unless ``same_second_every`` makes every Nth one share the previous one's second.
Video ids follow TikTok's layout: ``create_time << 32 | random32``, a 19-digit string starting with 7.
"""

from __future__ import annotations

import random
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from operator import attrgetter
from typing import Any

from .config import EXTRA_FIELD_NAME, MISSING_FIELD_CYCLE, VIDEO_FIELDS

_TWO_YEARS = 2 * 365 * 86400
_GROUP_MS = 500  # the newest of two videos sharing a second is at +500 ms, the older at +400 ms
_MIN_GAP = 60
_SIZES = ((1920, 1080), (1280, 720), (1024, 576), (1080, 1080))
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOPICS = (
    "sourdough",
    "trail run",
    "desk setup",
    "street food",
    "skate park",
    "thrift haul",
    "sunset",
    "coffee art",
    "bike repair",
    "tiny garden",
    "synth jam",
    "rainy day",
    "city walk",
    "dog park",
)
_HOOKS = ("POV:", "Day 3 of", "Trying", "How I", "Quick tip:", "Underrated:", "Wait for it…", "Rating")
_TAGS = ("#fyp", "#foryou", "#diy", "#food", "#travel", "#music", "#tutorial", "#vlog", "#café", "#✨")


class Video:
    """One public video; only stored facts, derived strings are rendered per request."""

    __slots__ = (
        "id",
        "create_time",
        "create_time_ms",
        "duration",
        "height",
        "width",
        "like_count",
        "comment_count",
        "share_count",
        "view_count",
        "is_aigc",
        "title",
        "video_description",
        "missing",
    )

    def __init__(self, vid: str, create_time: int, rnd: Callable[[], float], missing: str | None,
                 create_time_ms: int | None = None) -> None:
        self.id = vid
        self.create_time = create_time
        self.create_time_ms = create_time_ms if create_time_ms is not None else create_time * 1000
        self.duration = 5 + int(rnd() * 175)
        self.height, self.width = _SIZES[int(rnd() * len(_SIZES))]
        views = int(80 * 10 ** (4.2 * rnd() ** 2))
        likes = int(views * (0.02 + 0.1 * rnd()))
        self.view_count = views
        self.like_count = likes
        self.comment_count = int(likes * (0.005 + 0.045 * rnd()))
        self.share_count = int(likes * (0.01 + 0.09 * rnd()))
        self.is_aigc = rnd() < 0.05
        self.title, self.video_description = _texts(int(rnd() * 4096))
        self.missing = missing


@cache
def _texts(k: int) -> tuple[str, str]:
    """(title, description) for a text seed; cached so 100k videos share a few thousand strings."""
    title = f"{_HOOKS[(k >> 4) % len(_HOOKS)]} {_TOPICS[k % len(_TOPICS)]}"
    return title, f"{title} {_TAGS[k % len(_TAGS)]} {_TAGS[(k >> 6) % len(_TAGS)]}"


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(n))


class Account:
    """The user profile plus the public video list (ascending by create_time internally)."""

    def __init__(
        self, video_count: int, seed: int, anchor_time: int | None, missing_every: int, client_key: str,
        same_second_every: int = 0, label: str | None = None, peers: Sequence[Account] = (),
    ) -> None:
        """``label`` tags the display name (accounts after the first, so they are told apart); ``peers`` are
        the app's other accounts, whose video ids this one must not reuse."""
        rng = random.Random(seed)
        self.peers: list[Account] = list(peers)
        now = int(time.time())
        anchor = anchor_time if anchor_time is not None else now - now % 86400
        self._rng = random.Random(seed * 7919 + 1)  # mutations (add/bump), independent of generation
        self._missing_every = missing_every
        self._generated = 0
        self.client_key = client_key
        self.username = f"sandbox.{_alnum(rng, 6).lower()}"
        self._user = {
            "open_id": "-000" + _alnum(rng, 32),
            "union_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "display_name": f"Sandbox Creator {rng.randint(1, 999)}" + (f" ({label})" if label else ""),
            "bio_description": "Synthetic account served by the local TikTok sandbox ✨",
            "profile_deep_link": f"https://vm.tiktok.com/ZS{_alnum(rng, 7)}/",
            "is_verified": False,
            "username": self.username,
            "follower_count": rng.randint(1_000, 2_000_000),
            "following_count": rng.randint(10, 2_000),
        }
        avatar = f"{rng.getrandbits(128):032x}"
        expires = now - now % 3600 + 48 * 3600  # signed-URL TTLs, stable for the instance's lifetime
        sig = f"{rng.getrandbits(64):016x}"
        for key, px in (("avatar_url", 168), ("avatar_url_100", 100), ("avatar_large_url", 1080)):
            self._user[key] = (
                f"https://p16-sign-va.tiktokcdn.com/tos-maliva-avt-0068/{avatar}"
                f"~tplv-tiktokx-cropcenter:{px}:{px}.jpeg?x-expires={expires}&x-signature={sig}"
            )
        self._cover_expires = now - now % 3600 + 6 * 3600

        # Generate newest -> oldest with unique, >= 60 s gaps spread over ~2 years, then store ascending.
        rnd = rng.random
        bits = rng.getrandbits
        spread = 2 * max(0.0, _TWO_YEARS / max(video_count, 1) - _MIN_GAP)
        t = anchor - 3600 - int(rnd() * 7200)
        desc: list[Video] = []
        shares = False  # this video shares the previous (newer) one's second
        for i in range(video_count):
            joins_next = same_second_every > 0 and (i + 1) % same_second_every == 0 and not shares
            ms = t * 1000 + (_GROUP_MS - 100 if shares else _GROUP_MS if joins_next else 0)
            vid = str(t << 32 | bits(32))
            while self.peers and self._taken_by_peer(vid):  # never for a single account: same stream
                vid = str(t << 32 | bits(32))
            desc.append(Video(vid, t, rnd, self._next_missing(), ms))
            shares = joins_next
            if not shares:
                t -= _MIN_GAP + int(rnd() * spread)
        desc.reverse()
        self._videos: list[Video] = desc
        self._times: list[int] = [v.create_time_ms for v in desc]  # ascending, milliseconds
        self._by_id: dict[str, Video] = {v.id: v for v in desc}
        self._likes = sum(v.like_count for v in desc)
        self._getters = self._build_getters()

    def _taken_by_peer(self, vid: str) -> bool:
        return any(vid in p._by_id for p in self.peers)

    def _next_missing(self) -> str | None:
        self._generated += 1
        every = self._missing_every
        if every > 0 and self._generated % every == 0:
            return MISSING_FIELD_CYCLE[(self._generated // every - 1) % len(MISSING_FIELD_CYCLE)]
        return None

    def _build_getters(self) -> dict[str, Callable[[Video], Any]]:
        utm = f"utm_campaign=tt4d_open_api&utm_source={self.client_key}"
        user, exp = self.username, self._cover_expires

        def share_url(v: Video) -> str:
            return f"https://www.tiktok.com/@{user}/video/{v.id}?{utm}"

        def embed_html(v: Video) -> str:
            return (
                f'<blockquote class="tiktok-embed" cite="{share_url(v)}" data-video-id="{v.id}" '
                f'style="max-width:605px;min-width:325px;"><section></section></blockquote>'
                '<script async src="https://www.tiktok.com/embed.js"></script>'
            )

        getters: dict[str, Callable[[Video], Any]] = {f: attrgetter(f) for f in VIDEO_FIELDS}
        getters["cover_image_url"] = lambda v: (
            f"https://p16-sign.tiktokcdn-us.com/tos-useast5-p-0068-tx/{v.id[-12:]}~tplv-noop.image"
            f"?x-expires={exp}&x-signature={(int(v.id) * 2654435761) & 0xFFFFFFFF:08x}"
        )
        getters["share_url"] = share_url
        getters["embed_html"] = embed_html
        getters["embed_link"] = lambda v: (
            f"https://www.tiktok.com/static/profile-video?id={v.id}&hide_author=1&{utm}"
        )
        return getters

    # ---- reads -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._videos)

    @property
    def newest_create_time(self) -> int | None:
        return self._videos[-1].create_time if self._videos else None

    @property
    def oldest_create_time(self) -> int | None:
        return self._videos[0].create_time if self._videos else None

    def user(self, fields: Iterable[str]) -> dict[str, Any]:
        full = dict(self._user, likes_count=self._likes, video_count=len(self._videos))
        return {f: full[f] for f in fields}

    def render(self, videos: Iterable[Video], fields: Iterable[str], extra: bool) -> list[dict[str, Any]]:
        """Video dicts with only ``fields`` (a video's missing key stays absent; extra key if asked)."""
        pairs = [(f, self._getters[f]) for f in dict.fromkeys(fields)]
        out = [{f: g(v) for f, g in pairs if f != v.missing} for v in videos]
        if extra:
            for d in out:
                d[EXTRA_FIELD_NAME] = True
        return out

    def page(self, cursor: int, max_count: int) -> tuple[list[Video], bool]:
        """Up to max_count videos newest first with create_time_ms < cursor (0 = from the top)."""
        hi = bisect_left(self._times, cursor) if cursor > 0 else len(self._times)
        lo = max(0, hi - max_count)
        return self._videos[lo:hi][::-1], lo > 0

    def lookup(self, video_ids: Iterable[str]) -> list[Video]:
        by_id = self._by_id
        return [by_id[i] for i in dict.fromkeys(video_ids) if i in by_id]

    def all_videos(self) -> list[Video]:
        return self._videos[::-1]

    # ---- mutations ---------------------------------------------------------------------------------
    def add(self, n: int, create_time: int | None) -> list[Video]:
        """n new videos at unique seconds: from max(now, newest+1) upwards, or from create_time upwards
        skipping seconds already taken (then they may land anywhere in the history)."""
        newest = self.newest_create_time
        t = create_time if create_time is not None else max(int(time.time()), (newest or 0) + 1)
        added: list[Video] = []
        taken = {v.create_time for v in self._videos}
        for _ in range(n):
            while t in taken:
                t += 1
            vid = str(t << 32 | self._rng.getrandbits(32))
            while self.peers and self._taken_by_peer(vid):
                vid = str(t << 32 | self._rng.getrandbits(32))
            v = Video(vid, t, self._rng.random, self._next_missing())
            i = bisect_left(self._times, v.create_time_ms)
            taken.add(t)
            self._times.insert(i, v.create_time_ms)
            self._videos.insert(i, v)
            self._by_id[v.id] = v
            self._likes += v.like_count
            added.append(v)
            t += 1
        return added

    def delete(self, video_id: str) -> None:
        v = self._by_id.pop(video_id)  # KeyError for unknown ids: tests should notice their own typos
        i = bisect_left(self._times, v.create_time_ms)
        del self._times[i]
        del self._videos[i]
        self._likes -= v.like_count

    def bump(self, video_ids: list[str] | None, fraction: float) -> list[str]:
        """Grow counters (views first, keeping view >= like); returns the changed ids."""
        if video_ids is None:
            k = min(len(self._videos), max(1, round(fraction * len(self._videos)))) if fraction > 0 else 0
            targets = self._rng.sample(self._videos, k)
        else:
            targets = [self._by_id[i] for i in dict.fromkeys(video_ids)]
        rnd = self._rng.random
        for v in targets:
            extra_views = 1 + int(v.view_count * 0.1 * rnd())
            extra_likes = int(extra_views * 0.1 * rnd())
            v.view_count += extra_views
            v.like_count += extra_likes
            v.comment_count += int(extra_likes * 0.05 * rnd())
            v.share_count += int(extra_likes * 0.05 * rnd())
            self._likes += extra_likes
        return [v.id for v in targets]
