"""The Python module against servers started with -Y (memcached's ASCII authentication): ascii_auth=True
sends username/password as the token on every new connection, so the python-memcached API, multi-gets and
herd calls work as without it; wrong or missing credentials are memkit.AuthError, never a value."""
import os
import tempfile

import pytest

from conftest import Server, WANTED


@pytest.fixture(scope="module")
def auth_servers():
    """A memkitd and a memcached with -Y and the users file they share."""
    fd, path = tempfile.mkstemp(prefix="memkit-pyauth-")
    os.write(fd, b"alice:s3cret\nbob:pa:ss\n")
    os.close(fd)
    servers = {kind: Server(kind, ["-Y", path]) for kind in WANTED}
    yield servers
    for s in servers.values():
        s.stop()
    os.unlink(path)


@pytest.mark.parametrize("kind", WANTED)
def test_ascii_auth_credentials(auth_servers, memkit, kind):
    addr = auth_servers[kind].addr
    mc = memkit.Client([addr], username="bob", password="pa:ss", ascii_auth=True)
    assert mc.set("y:a", "v") and mc.get("y:a") == "v"
    assert mc.set_multi({"y:m%d" % i: i for i in range(20)}) == []
    assert mc.get_multi(["y:a", "y:m19", "y:none"]) == {"y:a": "v", "y:m19": 19}
    assert mc.get_or_set("y:gos", lambda: "computed", 60) == "computed"  # meta, after the token
    mc.set("y:nr", "w", noreply=True)
    assert mc.get("y:nr") == "w"
    bad = memkit.Client([addr], username="bob", password="nope", ascii_auth=True, raise_errors=True)
    with pytest.raises(memkit.AuthError):
        bad.get("y:a")
    quiet = memkit.Client([addr], username="bob", password="nope", ascii_auth=True)
    assert quiet.get("y:a") is None and not quiet.set("y:a", "x")
    (counters,) = quiet.counters().values()
    assert counters["alive"] and counters["errors"] == 0  # refused credentials do not mark the server dead
    assert mc.get("y:a") == "v"


def test_ascii_auth_refuses_credentials_the_token_cannot_carry(memkit):
    with pytest.raises(ValueError):
        memkit.Client(["127.0.0.1:1"], username="al ice", password="x", ascii_auth=True)
    with pytest.raises(ValueError):
        memkit.Client(["127.0.0.1:1"], ascii_auth=True)
