"""Staff password policy (issue 11, item 13): breached list, strength estimate by role, no username inside;
applied wherever a password is set (the domain and `waybill users create`), never echoing the password."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from courier_api import passwords, staff
from courier_api.models import StaffUser
from tests.conftest import run
from tests.courier_api import make_staff
from waybill.errors import ValidationFailed
from waybill.permissions import MFA_ROLES, STAFF_ROLES, SYSTEM

STRONG = "vivid-harbor-lantern-57"  # four unrelated tokens: zxcvbn scores it 4, on no breached list


def _create(services, username, role, password):
    with services.session_factory() as s:
        return staff.create_user(s, SYSTEM, username, role, "A001" if role in staff.STATION_ROLES else None,
                                 password, services.codec)


def _refused(services, username, role, password):
    with pytest.raises(ValidationFailed) as err:
        _create(services, username, role, password)
    assert err.value.field == "password"
    assert password not in err.value.message
    return err.value.message


def test_password1234_for_an_admin_is_refused(services):
    # 12 characters: the old length-only rule accepted it for any role, admin included.
    assert "泄露" in _refused(services, "root.admin", "admin", "password1234")


@pytest.mark.parametrize("password", ["qwertyuiop123", "Password1234", "PASSWORD1234", "iloveyou1234",
                                      "woaini1314520", "zhangwei123456"])
def test_breached_passwords_are_refused_for_every_role(services, password):
    for role in ("courier", "admin"):
        _refused(services, f"u.{role}", role, password)


def test_the_estimate_is_stricter_for_roles_with_mfa(services):
    # Not on the breached list, zxcvbn score 3: enough for a courier, not for admin/auditor/privacy_officer.
    middling = "Summer2024!!"
    assert "强度不足" in _refused(services, "boss", "admin", middling)
    for role in sorted(MFA_ROLES):
        _refused(services, f"x.{role}", role, middling)
    assert _create(services, "walker", "courier", middling).user.role == "courier"


@pytest.mark.parametrize("password", ["aaaaaaaaaaaaaaaa", "abcdefghijklmnop", "1234567890123", "qazwsxedcrfvtgb",
                                      "courier-courier-courier"])
def test_patterns_the_estimate_sees_through_are_refused(services, password):
    _refused(services, "somebody", "courier", password)


@pytest.mark.parametrize("username,password", [
    ("zhang.wei", "ZhangWei-harbor-lantern-57"),   # the name without its separator, any case
    ("zhang.wei", "x-zhang.wei-harbor-lantern"),   # the name as written
    ("li.xiaoming", "lantern-XIAOMING-harbor-57"),  # a part of the name
])
def test_a_password_containing_the_username_is_refused(services, username, password):
    assert "用户名" in _refused(services, username, "courier", password)


def test_short_parts_of_a_name_do_not_count(services):
    # "li" and "wei" are in countless words; only the name or its parts of 4+ characters are refused.
    assert _create(services, "li.wei", "courier", "weibo-lantern-harbor-57").user.username == "li.wei"


def test_length_bounds_still_hold(services):
    assert "长度" in _refused(services, "shorty", "courier", "K8#vq!Zr2")
    assert "长度" in _refused(services, "longy", "courier", STRONG * 50)


def test_a_long_password_is_judged_by_its_start(services):
    # zxcvbn reads at most 72 characters: a weak start padded with randomness past them is still weak.
    _refused(services, "padder", "courier", "a" * 72 + "Xq7#vL9!mR2$")
    strong_long = (STRONG + "-") * 4
    assert len(strong_long) > passwords.ESTIMATE_CHARS
    assert _create(services, "padder2", "admin", strong_long).user.role == "admin"


def test_strong_passwords_are_accepted_and_log_in(services):
    new = make_staff(services, "strong.admin", "admin", password=STRONG)
    assert new.password == STRONG
    with services.session_factory() as s:
        assert s.execute(select(StaffUser).where(StaffUser.username == "strong.admin")).scalar_one()


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_generated_passwords_pass_the_policy(services, role):
    for i in range(3):
        new = make_staff(services, f"gen{i}.{role}", role)
        passwords.check_password(new.password, username=new.user.username, role=role)


def test_a_generated_password_containing_the_username_is_drawn_again(monkeypatch):
    draws = iter(["AAAabcZZZ" + "k" * 15, "Vq3xLp9TzR2mW8nB4cY6dF1g"])
    monkeypatch.setattr(staff.secrets, "token_urlsafe", lambda _n: next(draws))
    assert staff.generate_password("abc", "courier", "A001") == "Vq3xLp9TzR2mW8nB4cY6dF1g"


def _create_cli(cli_env, username, role, password):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")} | cli_env
    return subprocess.run([sys.executable, "-m", "waybill.commands.main", "users", "create", username, "--role",
                           role, "--password-stdin"], input=password + "\n", capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_refuses_a_weak_password_by_field_without_echoing_it(cli_env):
    proc = _create_cli(cli_env, "root.admin", "admin", "password1234")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["error"]["code"] == "validation_error" and doc["error"]["field"] == "password"
    assert "password1234" not in proc.stdout + proc.stderr
    proc = _create_cli(cli_env, "root.admin", "admin", "root.admin-harbor-lantern-57")
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["field"] == "password"
    # Nothing was half-written: the name is still free, and a strong password is taken.
    ok = _create_cli(cli_env, "root.admin", "admin", STRONG)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["password"] is None and STRONG not in ok.stdout
    generated = json.loads(run(["users", "create", "gen.admin", "--role", "admin"], cli_env).stdout)
    passwords.check_password(generated["password"], username="gen.admin", role="admin")


def _password_cli(cli_env, username, password):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")} | cli_env
    return subprocess.run([sys.executable, "-m", "waybill.commands.main", "users", "password", username,
                           "--password-stdin"], input=password + "\n", capture_output=True, text=True, env=env,
                          timeout=120)


def test_setting_a_password_applies_the_policy_and_revokes_tokens(services):
    new = make_staff(services, "reset.me", "auditor")
    with services.session_factory() as s:
        raw = staff.issue_token(s, new.user, secret=services.keys.secret("session_token"))
        s.commit()
    with services.session_factory() as s, pytest.raises(ValidationFailed) as err:
        staff.set_password(s, SYSTEM, "reset.me", "Summer2024!!")
    assert err.value.field == "password"
    with services.session_factory() as s:
        user, password, revoked = staff.set_password(s, SYSTEM, "reset.me", STRONG)
        s.commit()
    assert password == STRONG and revoked == 1 and staff.HASHER.verify(user.password_hash, STRONG)
    with services.session_factory() as s, pytest.raises(staff.AuthenticationFailed):
        staff.authenticate_token(s, raw, secret=services.keys.secret("session_token"))


def test_cli_users_password_refuses_weak_and_sets_strong(cli_env):
    run(["users", "create", "ops.admin", "--role", "admin"], cli_env)
    weak = _password_cli(cli_env, "ops.admin", "password1234")
    assert weak.returncode == 2 and json.loads(weak.stdout)["error"]["field"] == "password"
    assert "password1234" not in weak.stdout + weak.stderr
    ok = _password_cli(cli_env, "ops.admin", STRONG)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] and doc["password"] is None and STRONG not in ok.stdout
    generated = json.loads(run(["users", "password", "ops.admin"], cli_env).stdout)
    passwords.check_password(generated["password"], username="ops.admin", role="admin")
    missing = run(["users", "password", "nobody"], cli_env, check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
