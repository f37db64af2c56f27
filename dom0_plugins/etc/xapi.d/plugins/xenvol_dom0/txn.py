"""A record of the steps a call makes, each with what undoes it, as data.

Before a change, will() writes the step and the name of its compensation (a function of
undo.UNDO, registered beside its action, with JSON arguments) to the operation's journal; so a
call killed at any point is undone by whoever recovers its journal. A compensation therefore
runs whether or not the change happened, and does nothing when there is nothing to undo. A
change XAPI refused is marked done at once (an error answer changed nothing). rollback() runs
the compensations in reverse (undo.replay) and keeps going when one fails, reporting what it
could not undo."""

import contextlib

import XenAPI

from . import log
from .errors import XenvolError
from .undo import replay


class Steps:
    def __init__(self, call):
        self.call = call
        self.done = []

    def will(self, description, undo, **args):
        """Record a change about to be made (the cancel mark and progress are checked here,
        between steps)."""
        self.call.checkpoint(description)
        journal = self.call.journal
        n = journal.step(description, undo, args) if journal else len(self.done) + 1
        self.done.append((n, description, undo, args))
        log.step("doing: " + description)
        return n

    @contextlib.contextmanager
    def change(self, description, undo, **args):
        """will(), then the change in the with-block; a refusal by XAPI leaves nothing to undo."""
        self.will(description, undo, **args)
        try:
            yield
        except (XenAPI.Failure, XenvolError):
            self.finished()
            raise

    def replace(self, ns, description, undo, **args):
        """One step (already made) that stands for steps ns from now on."""
        journal = self.call.journal
        n = (
            journal.replace(ns, description, undo, args)
            if journal
            else max([e[0] for e in self.done] + [0]) + 1
        )
        self.done = [e for e in self.done if e[0] not in ns] + [(n, description, undo, args)]
        return n

    def finished(self, n=None):
        """Step n (default: the last) needs nothing more: undone, refused, or completed."""
        for i, entry in enumerate(self.done):
            if n is None and i == len(self.done) - 1 or entry[0] == n:
                del self.done[i]
                if self.call.journal:
                    self.call.journal.done(entry[0])
                return

    def rollback(self):
        """Undo every recorded step, newest first; returns the ones that failed."""
        steps, self.done = list(reversed(self.done)), []

        def done(n, description):
            if self.call.journal:
                self.call.journal.done(n)
            log.step("undone: " + description)

        return replay(
            self.call, steps, done, lambda description, _name: "could not undo: " + description
        )

    def commit(self):
        self.done = []
        if self.call.journal:
            self.call.journal.commit()


def _could_not_undo(description, _name):
    return "could not undo: " + description
