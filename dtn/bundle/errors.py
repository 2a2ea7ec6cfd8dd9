"""The one exception family the bundle codec raises."""


class BundleError(ValueError):
    """Input that RFC 9171 says must not be accepted; the message says what and where."""
