"""Keeping secrets out of logs and errors.

Two layers: values under password-like keys are masked wherever a structure is logged, and
every secret value the call has seen is scrubbed from any text that leaves the plugin."""
import re

MASK = "***"
_SECRET_KEY = re.compile(r"(password|passwd|secret_value|chap_secret)$", re.I)


def is_secret_key(key):
    """`auth_password` and `chappassword` are secrets; `chappassword_secret` is a uuid."""
    return bool(_SECRET_KEY.search(str(key)))


def mask(obj):
    if isinstance(obj, dict):
        return dict((k, MASK if is_secret_key(k) and v else mask(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [mask(v) for v in obj]
    return obj


class Scrubber(object):
    """Remembers the secret values of one call and blanks them out of text."""

    def __init__(self):
        self.values = set()

    def remember(self, value):
        # Shorter values would blank out ordinary words; CHAP secrets are 12 or more.
        if isinstance(value, str) and len(value) >= 4:
            self.values.add(value)

    def remember_in(self, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if is_secret_key(k):
                    self.remember(v)
                else:
                    self.remember_in(v)
        elif isinstance(obj, list):
            for v in obj:
                self.remember_in(v)

    def __call__(self, text):
        text = str(text)
        for v in sorted(self.values, key=len, reverse=True):
            text = text.replace(v, MASK)
        return text


SCRUB = Scrubber()
