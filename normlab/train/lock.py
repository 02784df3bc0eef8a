"""Exclusive lock files with an owner and a heartbeat: one writer per run workdir, one trainer per sweep cell.

    lock = acquire(path, purpose="workdir /x")   # LockHeldError names the live owner
    ...                                           # a daemon thread refreshes the heartbeat
    lock.release()

The lock is a small JSON file {host, pid, start_time, heartbeat, token}. It is created whole (written to
a temporary file, then `os.link`ed to its name, which fails if the name exists), so a reader never sees
half a lock. A lock is stale, and is taken over with a message, when

  * its owner ran on this host and that pid no longer exists, or
  * its heartbeat is older than `stale_after_s` (STALE_AFTER_S = 120 s by default; the owner refreshes it
    every HEARTBEAT_S = 10 s). Hosts sharing a workdir must agree on the time to well within that.

Override both with NORMLAB_LOCK_STALE_S / NORMLAB_LOCK_HEARTBEAT_S (tests use a second or two). Taking
over is serialized by a short-lived `<path>.takeover` file (created exclusively), and the stale lock is
replaced only if it still holds the token that was judged stale, so two processes that find the same
stale lock never both win. A process that holds a lock may acquire it again (nested, counted).

A holder that finds its lock taken over (it stalled past the timeout, e.g. a suspended job) must not
write any more: its heartbeat thread prints one line and ends the process with exit status LOST_EXIT.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Callable

from normlab.errors import UserError

STALE_AFTER_S = 120.0
HEARTBEAT_S = 10.0
LOST_EXIT = 4
_TAKEOVER_STALE_S = 30.0  # a takeover file older than this belongs to a process that died mid-takeover


def stale_after_s() -> float:
  return float(os.environ.get("NORMLAB_LOCK_STALE_S", STALE_AFTER_S))


def heartbeat_s() -> float:
  return float(os.environ.get("NORMLAB_LOCK_HEARTBEAT_S", min(HEARTBEAT_S, stale_after_s() / 4)))


class LockHeldError(UserError):
  """Another live process holds the lock; the message names it."""

  def __init__(self, message: str, owner: dict):
    super().__init__(message)
    self.owner = owner


def read(path: str) -> dict | None:
  """The lock's owner record, or None if there is no (readable) lock."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def stale_reason(owner: dict, *, now: float | None = None, timeout: float | None = None) -> str | None:
  """Why `owner`'s lock is stale ('pid N is dead on HOST', 'no heartbeat for S s'), or None if live."""
  now = time.time() if now is None else now
  timeout = stale_after_s() if timeout is None else timeout
  if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
    return f"pid {owner.get('pid')} is dead on {owner.get('host')}"
  age = now - float(owner.get("heartbeat", 0))
  if age > timeout:
    return f"no heartbeat for {age:.0f} s (timeout {timeout:.0f} s)"
  return None


def describe(owner: dict, now: float | None = None) -> str:
  now = time.time() if now is None else now
  return (f"pid {owner.get('pid')} on {owner.get('host')} (started {now - float(owner.get('start_time', now)):.0f} s "
          f"ago, heartbeat {now - float(owner.get('heartbeat', now)):.0f} s ago)")


def _write_new(path: str, record: dict) -> str:
  tmp = f"{path}.tmp-{record['token']}"
  with open(tmp, "w") as f:
    json.dump(record, f)
    f.flush()
    os.fsync(f.fileno())
  return tmp


@dataclasses.dataclass
class Lock:
  path: str
  record: dict
  _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
  _thread: threading.Thread | None = None
  depth: int = 1
  lost: bool = False

  def _beat(self, interval: float) -> None:
    while not self._stop.wait(interval):
      self.refresh()
      if self.lost:
        owner = read(self.path)
        print(f"error: lost the lock {self.path} ({self.record.get('purpose')}) to "
              f"{describe(owner) if owner else 'nobody (the file is gone)'}; stopping so that only one process "
              f"writes", file=sys.stderr, flush=True)
        os._exit(LOST_EXIT)

  def refresh(self) -> None:
    """Write a new heartbeat, unless the lock is no longer ours (then mark it lost)."""
    current = read(self.path)
    if current is None or current.get("token") != self.record["token"]:
      self.lost = True
      self._stop.set()
      return
    self.record["heartbeat"] = time.time()
    tmp = _write_new(self.path, self.record)
    os.replace(tmp, self.path)

  def release(self) -> None:
    self.depth -= 1
    if self.depth > 0:
      return
    _HELD.pop(self.path, None)
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    current = read(self.path)
    if current is not None and current.get("token") == self.record["token"]:
      os.remove(self.path)

  def __enter__(self) -> "Lock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


_HELD: dict[str, Lock] = {}


def _try_takeover(path: str, stale: dict, record: dict) -> bool:
  """Replace the stale lock `stale` by `record` if nobody else is doing so and it is unchanged."""
  guard = f"{path}.takeover"
  try:
    fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    try:
      if time.time() - os.path.getmtime(guard) > _TAKEOVER_STALE_S:
        os.remove(guard)
    except OSError:
      pass
    return False
  try:
    os.close(fd)
    current = read(path)
    if current is None or current.get("token") != stale.get("token"):
      return False
    tmp = _write_new(path, record)
    os.replace(tmp, path)
    return True
  finally:
    os.remove(guard)


def acquire(path: str, *, purpose: str, wait_s: float = 0.0, log: Callable[[str], None] = print,
            heartbeat: bool = True) -> Lock:
  """Take the lock at `path` (for `purpose`, named in messages), waiting up to `wait_s` for a live owner.

  Raises LockHeldError (one line naming the owner) if a live process still holds it after `wait_s`.
  """
  path = os.path.abspath(path)
  if path in _HELD:
    _HELD[path].depth += 1
    return _HELD[path]
  now = time.time()
  record = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": now, "heartbeat": now,
            "token": uuid.uuid4().hex, "purpose": purpose}
  deadline = now + wait_s
  while True:
    tmp = _write_new(path, record)
    try:
      os.link(tmp, path)
      acquired = True
    except FileExistsError:
      acquired = False
    finally:
      os.remove(tmp)
    if not acquired:
      owner = read(path)
      if owner is None:  # removed meanwhile, or not a lock we can read: retry shortly
        if os.path.exists(path) and time.time() - os.path.getmtime(path) > stale_after_s():
          owner = {"token": None}
          reason = "unreadable lock file"
        else:
          time.sleep(0.05)
          continue
      else:
        reason = stale_reason(owner)
      if reason is not None:
        if _try_takeover(path, owner, record):
          log(f"took over the stale lock of {purpose} from {describe(owner) if owner.get('pid') else 'an unknown owner'}: "
              f"{reason}")
          acquired = True
      elif time.time() >= deadline:
        raise LockHeldError(f"{purpose} is locked by {describe(owner)}; lock file {path}", owner)
    if acquired:
      lock = Lock(path, record)
      if heartbeat:
        lock._thread = threading.Thread(target=lock._beat, args=(heartbeat_s(),), daemon=True,
                                        name=f"lock-heartbeat {os.path.basename(path)}")
        lock._thread.start()
      _HELD[path] = lock
      return lock
    time.sleep(min(0.2, max(0.01, deadline - time.time())))
