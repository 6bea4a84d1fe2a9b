"""Playlists and the manifest, per store: when each is re-rendered and uploaded, and its final version at close.

Owned by the :class:`~.uploader.Uploader`. Every method is called with the uploader's lock held (by the
recorder's threads through ``playlist_updated``/``manifest_updated``, by the workers and the scheduler, by
``close()``), except :meth:`Documents.render`, which a worker calls without it (it runs the catalog's render
callbacks). No I/O. Rules it keeps:

- After a segment is stored in a store, the playlists that list it (all of them, until a render has said which)
  are marked to be re-rendered for that store, and uploaded if their text changed, so they list only stored
  segments. A playlist that lists nothing is not uploaded to a store that has none of it yet.
- The ``is_stored`` predicate handed to a playlist's render is *prefix-closed* for the primary: once it answered
  False for one segment it answers False for every later segment of that render (render must ask about
  segments in playlist order), so a live playlist only grows at its end, as HLS EVENT playlists must. For the
  backup, which holds a sparse subset, it is plain membership.
- The manifest is uploaded at most every ``manifest_interval`` seconds while recording and once at close, to the
  primary and (when it holds segments) to the backup. Documents go to the backup only once the session is
  backed up (or they are there already); each segment stored there marks them all to be rendered for it.
- At close every document gets a final version in each usable store it belongs in. A store's final version is
  given up after ``FINAL_ATTEMPTS`` failures, at once when the store refused the object, or when the store failed
  twice during the final phase and is still failing (the backfill deadline has passed by then: it is down, don't
  spend the close budget).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .health import Health
from .ledger import BACKUP, PRIMARY, Segment


@dataclass(eq=False)
class Doc:
    """A playlist or the manifest: re-rendered on demand, uploaded per store when its text changed. The dicts
    are keyed by store role."""

    key: str
    kind: Literal["playlist", "manifest"]
    render: Callable
    dirty: dict[str, bool] = field(default_factory=dict)          # needs a render
    uploaded: dict[str, bytes] = field(default_factory=dict)      # last uploaded content
    inflight: dict[str, bool] = field(default_factory=dict)
    final: dict[str, bool] = field(default_factory=dict)          # final version uploaded
    last_upload: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)


class Documents:
    FINAL_ATTEMPTS = 5  # attempts per store for the final version of a playlist/manifest at close()

    def __init__(self, roles: tuple[str, ...], *, manifest_interval: float) -> None:
        self.roles = roles  # the configured stores
        self.manifest_interval = manifest_interval
        self.final_phase = False  # close()'s final phase has begun (begin_final)
        self.playlists: dict[str, Doc] = {}
        self.manifest: Doc | None = None
        self._key_to_playlists: dict[str, set[str]] = {}  # segment key -> playlists whose render asked about it

    def all(self) -> list[Doc]:
        docs = list(self.playlists.values())
        if self.manifest is not None:
            docs.append(self.manifest)
        return docs

    # -- changes (caller holds the uploader's lock) -----------------------------------------------------------

    def playlist_updated(self, key: str, render: Callable[[Callable[[str], bool]], str]) -> None:
        doc = self.playlists.get(key)
        if doc is None:
            doc = self.playlists[key] = Doc(key=key, kind="playlist", render=render)
        doc.render = render
        for role in self.roles:
            doc.dirty[role] = True

    def manifest_updated(self, key: str, render: Callable[[Callable[[str], str | None]], bytes]) -> None:
        if self.manifest is None or self.manifest.key != key:
            self.manifest = Doc(key=key, kind="manifest", render=render)
        self.manifest.render = render
        for role in self.roles:
            self.manifest.dirty[role] = True

    def segment_stored(self, key: str, role: str, *, backed_up: bool) -> None:
        """A segment is stored in ``role``'s store (in the primary: maybe by backfill)."""
        if role == BACKUP:  # a backup that now holds segments gets its playlists too
            for doc in self.all():
                doc.dirty[BACKUP] = True
        names = self._key_to_playlists.get(key)
        docs = [self.playlists[n] for n in names if n in self.playlists] if names else self.playlists.values()
        for doc in docs:
            doc.dirty[role] = True
        if self.manifest is not None:
            self.manifest.dirty[PRIMARY] = True
            if backed_up:
                self.manifest.dirty[BACKUP] = True

    # -- scheduling (caller holds the uploader's lock) --------------------------------------------------------

    def due(self, now: float, *, backed_up: bool, health: Health) -> tuple[list[tuple[Doc, str]], float]:
        """The (document, store role) uploads these rules allow now, in order, and the earliest time one that
        waits will be allowed (inf when none waits). Whether the store takes a request now is the caller's."""
        ready: list[tuple[Doc, str]] = []
        wake = float("inf")
        for doc in self.all():
            for role in (PRIMARY, BACKUP):
                if not doc.dirty.get(role) or doc.inflight.get(role):
                    continue
                if role == BACKUP and not (backed_up or BACKUP in doc.uploaded):
                    continue
                if doc.kind == "manifest" and not self.final_phase:
                    at = doc.last_upload.get(role, -1e18) + self.manifest_interval
                    if at > now:
                        wake = min(wake, at)
                        continue
                nb = doc.not_before.get(role, 0.0)
                if nb > now:
                    wake = min(wake, nb)
                    continue
                if self.final_phase and self.given_up(doc, role, health):
                    continue
                ready.append((doc, role))
        return ready, wake

    # -- one upload (a worker) -------------------------------------------------------------------------------

    def render(self, doc: Doc, role: str, segments: Mapping[str, Segment]) -> tuple[bytes, int, list[str]]:
        """Render ``doc`` for ``role``'s store, WITHOUT the lock (the callback is the catalog's). Returns the
        content, the number of stored segments it lists (1 for the manifest) and the keys the render asked about
        (hand them to :meth:`rendered`)."""
        if doc.kind == "manifest":
            def location_of(k: str) -> str | None:
                s = segments.get(k)
                if s is None:
                    return None
                return PRIMARY if s.in_primary else BACKUP if s.in_backup else None
            out = doc.render(location_of)
            return (out.encode() if isinstance(out, str) else bytes(out)), 1, []

        asked: list[str] = []
        listed = 0
        closed = False

        def is_stored(k: str) -> bool:
            nonlocal listed, closed
            asked.append(k)
            if closed:
                return False
            s = segments.get(k)
            ok = s is not None and (s.in_primary if role == PRIMARY else s.in_backup)
            if not ok and role == PRIMARY:
                closed = True  # prefix-closed: the live playlist only grows at its end
            listed += ok
            return ok

        out = doc.render(is_stored)
        return (out.encode() if isinstance(out, str) else bytes(out)), listed, asked

    def rendered(self, doc: Doc, role: str, content: bytes, listed: int, asked: list[str], *, final: bool) -> bool:
        """After :meth:`render`: whether ``content`` must be uploaded. When not (unchanged, or nothing of it in this
        store yet), its final version counts as stored where that applies (``final``: the final phase had begun
        before the render). Caller holds the uploader's lock."""
        for k in asked:
            self._key_to_playlists.setdefault(k, set()).add(doc.key)
        if doc.uploaded.get(role) == content or (listed == 0 and role not in doc.uploaded
                                                  and doc.kind == "playlist"):
            if final and doc.uploaded.get(role) == content and not doc.dirty.get(role):
                doc.final[role] = True
            elif final and listed == 0 and role not in doc.uploaded:
                doc.final[role] = True  # nothing of it in this store
            return False
        return True

    def stored(self, doc: Doc, role: str, content: bytes, now: float, *, final: bool) -> None:
        """``content`` was uploaded (``final``: as in :meth:`rendered`). Caller holds the uploader's lock."""
        doc.uploaded[role] = content
        doc.last_upload[role] = now
        doc.attempts[role] = 0
        if final and not doc.dirty.get(role):
            doc.final[role] = True

    def failed(self, doc: Doc, role: str, now: float, health: Health, *, upload: bool = False,
               refused: bool = False) -> None:
        """Rendering or (``upload``) uploading failed; ``refused``: the store refused the object. Retried after a
        backoff; a failed upload is rendered again. Caller holds the uploader's lock."""
        if upload:
            doc.dirty[role] = True
        doc.attempts[role] = doc.attempts.get(role, 0) + 1
        doc.not_before[role] = now + health.backoff(doc.attempts[role])
        if refused:
            doc.attempts[role] = 99

    # -- close (caller holds the uploader's lock) ------------------------------------------------------------

    def targets(self, doc: Doc, health: Health, *, backed_up: bool) -> list[str]:
        """The stores a document's final version goes to."""
        roles = []
        if health[PRIMARY].fatal is None:
            roles.append(PRIMARY)
        if health.has_backup and health[BACKUP].fatal is None and (backed_up or BACKUP in doc.uploaded):
            roles.append(BACKUP)
        return roles

    def begin_final(self, health: Health, *, backed_up: bool) -> None:
        """close()'s final phase: every document is rendered again for each of its stores, attempts counted anew."""
        self.final_phase = True
        for doc in self.all():
            for role in self.targets(doc, health, backed_up=backed_up):
                doc.dirty[role] = True
                doc.attempts[role] = 0
                doc.not_before[role] = 0.0

    def given_up(self, doc: Doc, role: str, health: Health) -> bool:
        """At close: stop trying to store a document's final version in a store (the rule is in the module
        docstring)."""
        if doc.attempts.get(role, 0) >= self.FINAL_ATTEMPTS:
            return True
        return health[role].down_at_close

    def final_done(self, health: Health, *, backed_up: bool) -> bool:
        """Every document's final version is stored, or given up, in each of its stores."""
        for doc in self.all():
            for role in self.targets(doc, health, backed_up=backed_up):
                if doc.inflight.get(role):
                    return False
                if doc.final.get(role) or self.given_up(doc, role, health):
                    continue
                return False
        return True

    def unwritten(self) -> tuple[str, ...]:
        """Documents whose final version is not in the primary."""
        return tuple(d.key for d in self.all() if not d.final.get(PRIMARY))

    def all_final_stored(self) -> bool:
        """Every document's final version is in the primary or the backup."""
        return all(d.final.get(BACKUP) or d.final.get(PRIMARY) for d in self.all())
