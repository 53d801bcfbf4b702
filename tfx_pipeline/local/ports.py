"""Loopback ports for the processes a local run starts: free ones, or checks on chosen ones."""

import contextlib
import socket
from typing import List


class PortInUse(RuntimeError):
    """A port a command must listen on is taken; the message says how to free or change it."""


def free_ports(host: str, count: int) -> List[int]:
    """Ports free right now; the sockets are held together so the ports are distinct."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def port_in_use(host: str, port: int) -> bool:
    """Whether another socket holds `port`, as a server binding it would find.

    SO_REUSEADDR, as servers set it, so a port left in TIME_WAIT by a process
    that just ended counts as free.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_in_use_message(host: str, port: int, user: str, fix: str) -> str:
    """What to say when `user` cannot have `port`: how to find the holder, then `fix`."""
    return (
        f"port {port} on {host}, wanted by {user}, is in use by another process "
        f"(`ss -ltnp 'sport = :{port}'` shows which): stop that process or {fix}"
    )
