"""Run scim2-server's own command line, and say which port it listens on.

    python scim2_server_port0.py --hostname 127.0.0.1 --port 0 [scim2-server options]

With ``--port 0`` the operating system picks a free port, but scim2-server (0.8.3)
announces the port it was given (``Serving SCIM on http://127.0.0.1:0/v2``). This
wraps the ``make_server`` its ``main`` calls: once the server's socket is bound and
listening, the first line on stdout is ``listening on http://HOST:PORT/v2``, with the
port the socket really has. Everything else is scim2-server's ``main`` as it is.
tests/scim2_server.rs runs it with the virtualenv's python and waits for that line.
"""

import sys

from scim2_server.testserver import cli

_make_server = cli.make_server


def make_server(host, port, app, **kwargs):
    server = _make_server(host, port, app, **kwargs)
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on http://{bound_host}:{bound_port}/v2", flush=True)
    return server


cli.make_server = make_server
sys.argv[0] = "scim2-server"
cli.main()
