"""spec.output.sftp: the API's rules and messages, the plan it becomes, the pod's Secret
refs, the run's location, and the worker's host key refusal text."""

from __future__ import annotations

import json
from typing import Any

import paramiko
import pytest
from pydantic import ValidationError

from ferry.api.output import MSG_ONE_DESTINATION, MSG_PASSWORD_OR_KEY, Output
from ferry.contract.plan import PlanError, SftpDestination, decode_plan, encode_plan
from ferry.reconcile.batches import Slice
from ferry.reconcile.jobspec import Owner, destination_env, worker_plan
from ferry.reconcile.runrules import run_location
from ferry.worker.sftp import fingerprint, host_key_line, host_key_refused
from tests.unit.builders import spec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa7bqU0m7pFfQ6c4jM3n6yv1Jp7Q2b5kq0bRMpV1c2d"
SFTP: dict[str, Any] = {"host": "sftp.partner.example", "port": 2222,
                        "directory": "/inbox/ferry/", "hostKey": KEY,
                        "credentialsSecretRef": {"name": "partner-sftp",
                                                 "privateKeyKey": "ssh-privatekey"}}


def sftp_spec(**changes: Any) -> Any:
    return spec().set("output", {"sftp": {**SFTP, **changes}, "format": "csv"}).build()


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Output.model_validate(document)
    return str(info.value.errors()[0]["msg"])


def test_exactly_one_destination() -> None:
    assert error_of({}) == f"Value error, {MSG_ONE_DESTINATION}"
    both = {"sftp": SFTP, "s3": {"bucket": "exports"}}
    assert error_of(both) == f"Value error, {MSG_ONE_DESTINATION}"


def test_a_private_key_or_a_password_not_both_nor_neither() -> None:
    for ref in ({"name": "s"}, {"name": "s", "privateKeyKey": "k", "passwordKey": "p"}):
        message = error_of({"sftp": {**SFTP, "credentialsSecretRef": ref}})
        assert message == f"Value error, {MSG_PASSWORD_OR_KEY}"


@pytest.mark.parametrize(("field", "value"), [
    ("directory", "inbox"), ("directory", "/inbox/../etc"), ("hostKey", "AAAA"),
    ("hostKey", f"{KEY} comment"), ("host", "user@host"), ("port", 70000),
])
def test_bad_fields_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Output.model_validate({"sftp": {**SFTP, field: value}})
    assert info.value.errors()[0]["loc"] == ("sftp", field)


def test_the_plan_carries_the_server_and_no_credentials() -> None:
    plan = worker_plan(Owner("contacts", "team-a", "uid-1"), sftp_spec(), "contacts.3",
                       [_slice()])
    text = encode_plan(plan)
    assert json.loads(text)["destination"] == {"sftp": {
        "host": "sftp.partner.example", "port": 2222, "directory": "/inbox/ferry",
        "hostKey": KEY}}
    assert "partner-sftp" not in text
    assert decode_plan(json.loads(text), lambda: 0).destination == SftpDestination(
        "sftp.partner.example", 2222, "/inbox/ferry", KEY)


def _slice() -> Slice:
    return Slice(index=0, total=1, start=None, end=None)


@pytest.mark.parametrize(("sftp", "path", "message"), [
    ({"host": "h", "directory": "relative"}, "plan.destination.sftp.directory",
     "must be an absolute path without . or .. segments, got 'relative'"),
    ({"host": "h", "port": 0, "directory": "/d"}, "plan.destination.sftp.port",
     "must be >= 1, got 0"),
    ({"host": "h", "directory": "/d", "hostKey": "nope"}, "plan.destination.sftp.hostKey",
     "must be one OpenSSH public key line (<type> <base64>), e.g. from ssh-keyscan"),
    ({"host": "h", "directory": "/d", "user": "x"}, "plan.destination.sftp.user",
     None),
])
def test_the_worker_refuses_a_bad_plan_destination(sftp: dict[str, Any], path: str,
                                                   message: str | None) -> None:
    document = {"job": "j", "run": "j.1", "source": {"table": "t"}, "format": "csv",
                "compression": "none", "batchCount": 1, "batchIndex": 0,
                "destination": {"sftp": sftp}}
    with pytest.raises(PlanError) as info:
        decode_plan(document, lambda: 0)
    assert info.value.path == path
    if message is not None:
        assert info.value.message == message


def test_the_pod_gets_the_login_from_secret_refs() -> None:
    env = destination_env(sftp_spec().output)
    assert env == [
        {"name": "FERRY_SFTP_USER", "valueFrom": {"secretKeyRef": {
            "name": "partner-sftp", "key": "username"}}},
        {"name": "FERRY_SFTP_PRIVATE_KEY", "valueFrom": {"secretKeyRef": {
            "name": "partner-sftp", "key": "ssh-privatekey"}}},
    ]
    password = sftp_spec(credentialsSecretRef={"name": "p", "userKey": "u",
                                               "passwordKey": "pw"})
    assert [e["name"] for e in destination_env(password.output)] == [
        "FERRY_SFTP_USER", "FERRY_SFTP_PASSWORD"]


def test_the_run_location_is_an_sftp_url() -> None:
    assert run_location(sftp_spec(), "contacts", "contacts.3") == \
        "sftp://sftp.partner.example:2222/inbox/ferry/contacts/contacts.3"
    assert run_location(spec().build(), "contacts", "contacts.3") == \
        "s3://exports/ferry/contacts/contacts.3"


def test_a_refused_host_key_says_how_to_pin_it() -> None:
    offered = paramiko.RSAKey.generate(1024)
    line = host_key_line(offered)
    dest = SftpDestination("h", 22, "/d", "")
    assert host_key_refused(dest, offered) == (
        f"SFTP h:22: refused the server's host key ssh-rsa {fingerprint(offered)}: no "
        "spec.output.sftp.hostKey is pinned; nothing was sent. After checking the "
        f"fingerprint with the server's owner, pin it: spec.output.sftp.hostKey: {line!r} "
        "(or ssh-keyscan -p 22 h)")
    changed = host_key_refused(SftpDestination("h", 22, "/d", KEY), offered)
    assert "it is not the pinned spec.output.sftp.hostKey (changed, or another server)" in \
        changed
