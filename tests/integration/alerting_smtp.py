"""A real SMTP server for tests/integration/alerting.rs (aiosmtpd, from PyPI).

usage: smtp_server.py PORT OUTDIR CERT KEY MODE USER PASSWORD
MODE is starttls (STARTTLS required before AUTH and MAIL) or implicit (TLS from the first byte).
Every message received is written to OUTDIR/NNNN.json; "ready" is printed once it listens.
"""
import json
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            path = os.path.join(self.outdir, f"{self.count:04}.json")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK message accepted"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return check


def main():
    port, outdir, cert, key, mode, user, password = sys.argv[1:8]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    common = dict(
        hostname="127.0.0.1",
        port=int(port),
        authenticator=authenticator(user, password),
        auth_required=True,
        auth_require_tls=True,
        server_hostname="localhost",
    )
    if mode == "starttls":
        controller = Controller(Recorder(outdir), tls_context=context, require_starttls=True, **common)
    elif mode == "implicit":
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this connection is TLS throughout.
        common["auth_require_tls"] = False
        controller = Controller(Recorder(outdir), ssl_context=context, **common)
    else:
        sys.exit(f"unknown mode {mode}")
    controller.start()
    print("ready", flush=True)
    # Runs until the test kills it.
    threading.Event().wait()


if __name__ == "__main__":
    main()
