"""The compensations a journal names: name -> function(call, **args), and the one loop that
replays them (a call's own rollback, txn.Steps.rollback, and the recovery of a dead call's
journal, recovery.recover).

Each compensation is registered beside the action it undoes (storage, vbd, integrate, lease,
a driver) and undoes (or, for a detach, finishes) one step whether or not the step's change
happened, found again from the step's arguments, and does nothing when there is nothing
left to do: it may run in the call that made the change, or in a later call recovering a
dead one."""

from . import log

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple  # noqa: F401

UNDO = {}  # type: Dict[str, Callable[..., Any]]
# Loads every module that registers compensations (the drivers, a vendor's too): installed by
# the registry, which knows where they are.
LOADER = [None]  # type: List[Optional[Callable[[], Any]]]


def compensation(name):
    """Register fn(call, **args) as the compensation `name` (drivers with steps of their own
    register theirs under a name of their own, e.g. "acme.unmap_lun")."""

    def register(fn):
        UNDO[name] = fn
        return fn

    return register


def find(name):
    """The compensation `name`; a third-party driver's registers when its file is loaded, so
    a call recovering another's journal loads the drivers first."""
    if name not in UNDO and LOADER[0] is not None:
        LOADER[0]()
    return UNDO[name]


def replay(call, steps, done, what):
    """Run the compensations of steps [(n, description, name, args)], in the order given;
    done(n) after each that ran. Keeps going when one fails; returns the descriptions of those
    that failed (what=lambda description, name: the words of the warning)."""
    failed = []
    for n, description, name, args in steps:
        try:
            find(name)(call, **args)
        except Exception as e:  # keep undoing the rest; the journal keeps this one
            log.warning("%s (%s: %s)" % (what(description, name), type(e).__name__, e))
            failed.append(description)
            continue
        done(n, description)
    return failed
