"""Remote input files (``root://`` through the XRootD client; other URLs as uproot reads them): the
pre-flight checks that turn a server that is down, a missing file or a file cut short on the server
into one line naming the URL, and the expansion of ``root://`` wildcards. XRootD and fsspec are
imported only when a URL is seen.

The XRootD client retries a refused connection for minutes (XRD_CONNECTIONRETRY attempts, each
XRD_CONNECTIONWINDOW seconds); the pre-flight first opens a plain TCP connection to each URL's server,
which fails in milliseconds when nothing listens and after CONNECT_TIMEOUT_S when nothing answers.
The reads themselves keep the client's retries and timeouts (XRD_* environment variables).
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from sparkad.core.errors import ConfigError, InputFileError, SparkadError

XROOTD_SCHEMES = ("root", "xroot", "roots", "xroots")
DEFAULT_PORTS = {"root": 1094, "xroot": 1094, "roots": 1094, "xroots": 1094, "http": 80, "https": 443}
CONNECT_TIMEOUT_S = 10.0
XRD_NOT_FOUND = 3011  # kXR_NotFound, the server's answer for a path that does not exist
NEEDS_XROOTD = "reading root:// URLs needs the XRootD client for Python (pip install xrootd fsspec-xrootd)"


def is_url(path: str) -> bool:
    return "://" in str(path)


def is_xrootd(url: str) -> bool:
    return urlsplit(url).scheme.lower() in XROOTD_SCHEMES


def server_problem(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the server of a URL cannot be reached (refused, unknown host, no answer within timeout s),
    or None when a TCP connection to it opens (or the URL names no host)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return f"invalid port in {parts.netloc}"
    if port is None:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as e:
        return f"cannot resolve host {host} ({e.strerror or e})"
    except TimeoutError:
        return f"cannot connect to {host}:{port} (no answer within {timeout:g} s)"
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or e})"


def _xrootd_client(url: str):
    try:
        import fsspec_xrootd  # noqa: F401  (uproot reads root:// through it)
        from XRootD import client
    except ImportError:
        raise SparkadError(f"{url}: {NEEDS_XROOTD}") from None
    return client


def _server_message(status) -> str:
    text = str(status.message).strip().splitlines()[0] if str(status.message).strip() else f"error {status.errno}"
    return text.replace("[ERROR] Server responded with an error: ", "")


def remote_size(url: str) -> int | None:
    """Size in bytes of a remote file as its server reports it (root:// only; None for other URLs).
    Raises InputFileError naming the URL when the server cannot be reached or has no such file."""
    problem = server_problem(url)
    if problem:
        raise InputFileError(url, problem)
    if not is_xrootd(url):
        return None
    client = _xrootd_client(url)
    u = client.URL(url)
    if not u.is_valid():
        raise InputFileError(url, "not a valid XRootD URL")
    status, info = client.FileSystem(f"{u.protocol}://{u.hostid}").stat(u.path)
    if not status.ok:
        if status.errno == XRD_NOT_FOUND:
            raise InputFileError(url, "file not found on the server")
        raise InputFileError(url, f"cannot be read on the server ({_server_message(status)})")
    if info.flags & client.flags.StatInfoFlags.IS_DIR:
        raise InputFileError(url, "is a directory on the server, not a file")
    return int(info.size)


def has_wildcard(url: str) -> bool:
    """A root:// URL whose path holds * or [...] (a ? starts the XRootD URL's parameters)."""
    return is_xrootd(url) and any(ch in urlsplit(url).path for ch in "*[")


def expand_url(url: str, where: str) -> list[str]:
    """The URLs a root:// wildcard matches on the server (sorted), or [url] for a plain URL.
    Raises ConfigError naming `where` when the server is unreachable or nothing matches."""
    if not has_wildcard(url):
        return [url]
    problem = server_problem(url)
    if problem:
        raise ConfigError(f"{where}: pattern {url!r}: {problem}")
    _xrootd_client(url)
    import fsspec

    parts = urlsplit(url)
    try:
        fs, path = fsspec.core.url_to_fs(parts._replace(query="", fragment="").geturl())
        matches = sorted(fs.glob(path))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: pattern {url!r} cannot be listed on the server "
                          f"({str(e).strip().splitlines()[0][:200]})") from None
    if not matches:
        raise ConfigError(f"{where}: pattern {url!r} matches no file")
    query = f"?{parts.query}" if parts.query else ""
    return [fs.unstrip_protocol(m) + query for m in matches]
