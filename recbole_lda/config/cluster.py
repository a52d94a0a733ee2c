"""Checks of a Ray cluster's address, before a command does any work."""

import socket

from recbole_lda.config.options import OptionError


def check_ray_address(address, timeout=10.0):
    """Fail at once when nothing answers at a Ray cluster's HOST:PORT (Ray itself retries
    for minutes before giving up)."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not port.isdigit():
        raise OptionError(f"--ray_address={address!r}: expected HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise OptionError(f"--ray_address={address}: no Ray cluster answers there ({err.strerror or err})") from None
