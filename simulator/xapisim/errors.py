"""XAPI errors as they travel on the wire: a code and a list of string parameters."""


class XapiError(Exception):
    """An API failure: ErrorDescription = [code] + params, all strings."""

    def __init__(self, code, *params):
        self.code = code
        self.params = [str(p) for p in params]
        Exception.__init__(self, code, *self.params)

    @property
    def description(self):
        return [self.code] + self.params


def handle_invalid(cls, ref):
    return XapiError("HANDLE_INVALID", cls, ref)


def uuid_invalid(cls, uuid):
    return XapiError("UUID_INVALID", cls, uuid)


def internal(message):
    return XapiError("INTERNAL_ERROR", message)
