"""Ray's token authentication for the Ray that a sweep starts or joins.

Ray 2.60 checks one shared token on every RPC and HTTP request of a cluster when `RAY_AUTH_MODE=token`.
Without it, anyone who reaches the cluster's ports (GCS, dashboard, client server) can run code as the user
who started it. Ray looks for the token in `RAY_AUTH_TOKEN`, then the file named by `RAY_AUTH_TOKEN_PATH`,
then `~/.ray/auth_token`; when `ray.init()` generates that file itself it is written with the process' umask
(world-readable under the usual 022), so lth_ray writes it first, owner-only.

Nothing here switches authentication off: `RAY_AUTH_MODE=disabled` set by the user is respected, with a
warning. Ray's private `Config`/`AuthenticationTokenLoader` are refreshed after the environment changes
(as Ray's own `enable_token_auth_by_default` does); Ray is pinned to 2.60.0.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
# Storage credentials that Tune copies from the driver's environment into every trial's Ray runtime env
# (`ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE`); Ray's runtime-env agent then logs that runtime env
# in plaintext in its session logs (`<ray tmp>/session_*/logs/runtime_env_agent.log`, mode 0644 in 0777 folders).
CREDENTIAL_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"})


class AuthSetupError(ValueError):
    """The token Ray would use is unusable (missing, empty, or exposed and not ours to fix)."""


def default_token_path() -> Path:
    """Where Ray keeps the user's token unless told otherwise (`~/.ray/auth_token`)."""
    return Path.home() / ".ray" / "auth_token"


def token_file() -> Path | None:
    """The token file Ray reads: `RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token` if present; None if
    `RAY_AUTH_TOKEN` (which wins over both) is set or there is no file."""
    if os.environ.get(TOKEN_ENV):
        return None
    if os.environ.get(TOKEN_PATH_ENV):
        return Path(os.environ[TOKEN_PATH_ENV]).expanduser()
    path = default_token_path()
    return path if path.exists() else None


def create_private_token(path: Path) -> None:
    """A new random token (256 bits, as Ray's generator) in `path`, created owner-only (0600, folder 0700).

    Never overwrites: an existing file (another process won the race) is left as it is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def make_private(path: Path) -> str | None:
    """Take group/other permissions off a token file of ours; returns a note when it had to.

    A token file readable by others that we do not own cannot be fixed here: `AuthSetupError`."""
    st = path.stat()
    if not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    if st.st_uid != os.getuid():
        raise AuthSetupError(
            f"Ray's token file {path} is readable by other users and not yours to fix "
            f"(mode {stat.S_IMODE(st.st_mode):o}); ask its owner to `chmod 600` it"
        )
    os.chmod(path, 0o600)
    return f"note: {path} was readable by other users (mode {stat.S_IMODE(st.st_mode):o}); made it 0600"


def _check_readable(path: Path) -> None:
    try:
        text = path.read_text().strip()
    except OSError as err:
        raise AuthSetupError(f"{TOKEN_PATH_ENV}={path}: cannot read the token file ({err.strerror})") from None
    if not text:
        raise AuthSetupError(f"{TOKEN_PATH_ENV}={path}: the token file is empty")


def _refresh_ray(reload_token: bool) -> None:
    """Make this process' Ray see the new environment (its config and token are cached at first use)."""
    # ray/_raylet.pyi lists only part of the compiled module, which has both names
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    if reload_token:
        AuthenticationTokenLoader.instance().reset_cache()


def prepare_auth(address: str | None) -> list[str]:
    """Before `ray.init`: token authentication on, a private token in place. Returns notes for the user.

    `address=None` (a new embedded Ray): `RAY_AUTH_MODE=token` unless the user set the variable, and a token
    (`~/.ray/auth_token`, created 0600 when no token is given). An address (an existing cluster): token mode
    when the user gave a token for it (`RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH`) and set no mode; Ray itself
    sends `~/.ray/auth_token` with `RAY_AUTH_MODE=token`, or to a local cluster found by `auto`.
    """
    notes: list[str] = []
    mode = os.environ.get(MODE_ENV)
    if mode is not None and mode.strip().lower() != "token":
        user = os.environ.get("USER") or str(os.getuid())
        return [
            f"warning: {MODE_ENV}={mode}: Ray's token authentication is off, so anyone who can reach this "
            f"Ray's ports can run code as {user}; unset it to keep authentication on"
        ]
    changed = created = False
    if mode is None and (address is None or os.environ.get(TOKEN_ENV) or os.environ.get(TOKEN_PATH_ENV)):
        os.environ[MODE_ENV] = "token"
        changed = True
    if os.environ.get(MODE_ENV, "").strip().lower() != "token":
        return notes
    path = token_file()
    if path is None and not os.environ.get(TOKEN_ENV) and address is None:
        path = default_token_path()
        create_private_token(path)
        created = True
        notes.append(f"note: Ray token authentication is on; its token is in {path} (readable by you only)")
    if path is not None:
        _check_readable(path)
        note = make_private(path)
        if note:
            notes.append(note)
    if changed or created:
        _refresh_ray(reload_token=created)
    return notes


def keep_credentials_out_of_runtime_env() -> None:
    """Stop Tune from copying storage credentials into the trials' Ray runtime env (where Ray logs them).

    For the embedded Ray only: its workers inherit the driver's environment anyway, credentials included,
    so nothing is lost. (On a cluster the nodes use their own credentials, e.g. an instance profile.)"""
    from ray.tune.execution import class_cache  # private (Ray is pinned); `get` reads this global per call

    class_cache.ENV_VARS_TO_PROPAGATE = set(class_cache.ENV_VARS_TO_PROPAGATE) - CREDENTIAL_VARS
