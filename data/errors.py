"""The one exception type of the data package."""


class DataError(Exception):
    """Input data that cannot be used, with a message that names the file and the fix.

    Raised for missing, truncated, corrupt or mismatched files, failed downloads,
    unusable texture folders and unsafe archives. train.py turns it into a usage
    error, so the message is all the user sees: it says what is wrong, where, and
    what to do about it.
    """
