"""A record of the steps a call made, each with the step that undoes it.

A step's compensation is registered right after the step succeeds; rollback runs them in
reverse and keeps going when one fails, reporting what it could not undo."""
from . import log


class Steps(object):
    def __init__(self):
        self.done = []

    def did(self, description, undo):
        log.step("done: " + description)
        self.done.append((description, undo))

    def rollback(self):
        """Undo every recorded step, newest first; returns the ones that failed."""
        failed = []
        while self.done:
            description, undo = self.done.pop()
            try:
                undo()
                log.step("undone: " + description)
            except Exception as e:  # keep undoing the rest
                log.warning("could not undo: %s (%s: %s)" % (description, type(e).__name__, e))
                failed.append(description)
        return failed

    def commit(self):
        self.done = []
