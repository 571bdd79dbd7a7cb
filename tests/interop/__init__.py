"""Interop tests against OpenSSL, gpgsm and NSS; helpers in peers.py and mime.py."""
