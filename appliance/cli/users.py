"""`appliance user ...`: the owner accounts and API tokens of the web pages.

There is no default password: `make install` (or the owner, by hand) runs `appliance
user add NAME` and types one; a password never goes on the command line (it would sit in
the shell history and in `ps`), only through the terminal prompt or `--password-stdin`.
The CLI writes users.sqlite3 in the state directory itself; the running daemon reads it
on every request, so a new password or a revoked token takes effect at once.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from appliance.config.schema import Config
from appliance.store.users import USERS_FILE, UserError, Users


def add_parsers(sub: Any) -> None:
    u = sub.add_parser("user", help="web owner accounts and API tokens")
    ua = u.add_subparsers(dest="action", required=True)
    for action, text in (("add", "create an owner account"), ("passwd", "set a new password")):
        p = ua.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    ua.add_parser("list", help="the accounts")
    ud = ua.add_parser("delete", help="delete an account (its sessions and tokens end)")
    ud.add_argument("name")
    t = ua.add_parser("token", help="API tokens for scripts")
    ta = t.add_subparsers(dest="token_action", required=True)
    tc = ta.add_parser("create", help="print a new token (shown this once)")
    tc.add_argument("user")
    tc.add_argument("label")
    ta.add_parser("list")
    tr = ta.add_parser("revoke")
    tr.add_argument("id")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise UserError("mismatch", "the two passwords differ")
    return first


def cmd_user(args: argparse.Namespace, cfg: Config) -> int:
    users = Users(cfg.storage.path() / USERS_FILE)
    try:
        if args.action == "add":
            users.add(args.name, _password(args), args.actor)
            print(f"user {args.name} added")
        elif args.action == "passwd":
            users.set_password(args.name, _password(args), args.actor)
            print(f"password of {args.name} changed; their sessions ended")
        elif args.action == "list":
            for name in users.names():
                print(name)
        elif args.action == "delete":
            users.delete(args.name, args.actor)
            print(f"user {args.name} deleted")
        elif args.token_action == "create":
            print(users.new_token(args.user, args.label, args.actor)["token"])
        elif args.token_action == "list":
            print(json.dumps(users.tokens(), indent=2))
        else:
            users.revoke_token(args.id, args.actor)
            print(f"token {args.id} revoked")
    except UserError as exc:
        print(f"appliance: {exc.message}", file=sys.stderr)
        return 1
    finally:
        users.close()
    return 0
