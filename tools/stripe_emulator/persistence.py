"""Keep the emulator's objects across restarts: the whole store saved to one file, restored on
start.

``make dev`` keeps its database in ``.local/pgdata``; without this, a restart would leave the
database describing customers, subscriptions and payments that Stripe (the emulator) no longer
knows. The *whole* :class:`~tools.stripe_emulator.state.Store` is saved, field by field except
what only makes sense in a running process (its lock, its listeners, requests in flight, the
address it listens on), so objects, events, hidden data, idempotency results and the clock
offset come back together, and fields added to the store later are saved without a change here.

A save is a pickle written to a temporary file and renamed over the previous one, so a crash
mid-save leaves the previous save intact. It happens shortly after any request that may have
changed the state (and after webhook deliveries, which update ``pending_webhooks``), and once
more on stop. The file belongs to the machine that wrote it and is read only from the local
state directory; it is not an exchange format.

Each save carries a *world* label given by the caller (``make dev`` uses the database's
identity): a save from another world (the database was recreated) is not restored, since it
would describe objects the database has never seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.stripe_emulator.server import EmulatorHandle
from tools.stripe_emulator.state import Store

log = logging.getLogger("tools.stripe_emulator.persistence")

FORMAT = 1
# Only meaningful inside one running process.
_RUNTIME_FIELDS = frozenset({"lock", "event_listeners", "idempotency_in_flight", "base_url"})
SAVE_DELAY_SECONDS = 0.2
POLL_SECONDS = 0.5


def _saved_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Store) if f.name not in _RUNTIME_FIELDS]


def dump_store(store: Store) -> dict[str, Any]:
    """A deep, consistent copy of every persistent field of ``store``."""
    with store.lock:
        # One pickle round trip copies everything at once, keeping shared references shared.
        state: dict[str, Any] = pickle.loads(  # noqa: S301 - our own bytes, made just now
            pickle.dumps({name: getattr(store, name) for name in _saved_fields()})
        )
    return state


def load_store(store: Store, state: dict[str, Any]) -> None:
    """Replace ``store``'s persistent fields by ``state`` (fields it lacks keep their value)."""
    with store.lock:
        for name in _saved_fields():
            if name not in state:
                continue
            current, value = getattr(store, name), state[name]
            # Containers are refilled in place: other parts of the emulator hold references.
            if isinstance(current, dict | list | set) and type(current) is type(value):
                current.clear()
                if isinstance(current, list):
                    current.extend(value)
                else:
                    current.update(value)
            else:
                setattr(store, name, value)


@dataclass
class Restored:
    """What :meth:`EmulatorPersistence.restore` found."""

    objects: int
    note: str


class EmulatorPersistence:
    """Saves a running emulator's store to ``path`` and restores it from there."""

    def __init__(self, handle: EmulatorHandle, path: Path, *, world: str) -> None:
        self.handle = handle
        self.path = path
        self.world = world
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self._last_attempts = -1

    @property
    def store(self) -> Store:
        return self.handle.emulator.store

    def restore(self) -> Restored:
        """Load the last save into the emulator, when there is one from this world."""
        if not self.path.exists():
            return Restored(0, "nothing saved yet: starting empty")
        try:
            saved = pickle.loads(self.path.read_bytes())  # noqa: S301 - our own file, see above
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise ValueError("unknown format")
        except Exception as exc:  # noqa: BLE001 - any unreadable save is set aside, not fatal
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            return Restored(
                0,
                f"the saved state could not be read ({type(exc).__name__}), kept as "
                f"{aside.name}; starting empty: `make reset` makes the database match",
            )
        if saved.get("world") != self.world:
            return Restored(
                0, "the saved state belongs to a database that no longer exists: starting empty"
            )
        load_store(self.store, saved["store"])
        count = len(self.store.objects)
        return Restored(count, f"{count} objects restored")

    def save(self) -> None:
        """Write the store now (atomically: a crash leaves the previous save whole)."""
        with self._save_lock:
            self._changed.clear()
            payload = {
                "format": FORMAT,
                "world": self.world,
                "saved_at": time.time(),
                "store": dump_store(self.store),
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(temporary, self.path)

    def changed(self) -> None:
        """Note that the state may have changed; a save follows shortly."""
        self._changed.set()

    def start(self) -> None:
        """Save in the background after changes, until :meth:`close`."""
        self.handle.server.after_change.append(self.changed)
        self._thread = threading.Thread(target=self._run, name="emulator-persistence", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop saving in the background and save one last time."""
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(ValueError):
            self.handle.server.after_change.remove(self.changed)
        self.save()

    def _deliveries_changed(self) -> bool:
        # A finished delivery changes an event's pending_webhooks without any API request.
        attempts = int(self.handle.emulator.webhooks.summary()["attempts"])
        changed = attempts != self._last_attempts
        self._last_attempts = attempts
        return changed

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._changed.wait(POLL_SECONDS) or self._deliveries_changed():
                if self._stop.wait(SAVE_DELAY_SECONDS):
                    return
                try:
                    self.save()
                except OSError as exc:
                    log.warning("could not save the emulator state to %s: %s", self.path, exc)
