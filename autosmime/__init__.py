"""autosmime: automatic S/MIME for any IMAP/SMTP mailbox.

    >>> import autosmime
    >>> autosmime.__version__
    '0.1.0'
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
