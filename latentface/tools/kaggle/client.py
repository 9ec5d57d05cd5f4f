"""Kaggle credentials and the official ``kaggle`` command, run in a subprocess.

Importing the ``kaggle`` package logs in (and fails without credentials), so it is never
imported: every call goes through the command, after credentials were looked for where the
command looks, so a missing one is reported with exactly what to set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from latentface.tools.kaggle.metadata import MIN_KAGGLE_FOR_PUSH, KaggleSetupError

TOKEN_PAGE = "https://www.kaggle.com/settings/api"


def kaggle_config_dirs(env: Mapping[str, str] = os.environ) -> list[Path]:
    """Where the kaggle CLI looks for its files: $KAGGLE_CONFIG_DIR, else ~/.kaggle (and the XDG one on Linux)."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"])]
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return [home / ".kaggle", xdg]


def _json_object(path: Path) -> dict:
    """The JSON object in ``path``; {} when it is missing (the CLI then looks elsewhere). A file that is
    there but is not a JSON object is an error naming it and the JSON error's line: the kaggle CLI would
    fail on it too, and "credentials not found" would send the user looking in the wrong place."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as error:
        raise KaggleSetupError(f"{path} is malformed: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise KaggleSetupError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        where = f" (line {error.lineno}, column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        shape = ' It should read {"username": "<user>", "key": "<key>"}.' if path.name == "kaggle.json" else ""
        raise KaggleSetupError(
            f"{path} is malformed: not valid JSON{where}: {getattr(error, 'msg', error)}.{shape} "
            f"Fix it, or delete it and create a new API token at {TOKEN_PAGE}"
        ) from None
    if not isinstance(data, dict):
        raise KaggleSetupError(
            f"{path} is malformed: expected a JSON object, got {type(data).__name__}. Fix it, or delete it and "
            f"create a new API token at {TOKEN_PAGE}"
        )
    return data


def credentials_help(env: Mapping[str, str] = os.environ) -> str:
    config = kaggle_config_dirs(env)[0]
    return (
        f"Kaggle credentials not found. Create an API token at {TOKEN_PAGE}, then either\n"
        "  export KAGGLE_API_TOKEN=<token>                     (kaggle >= 1.8; or save the token in "
        f"{config / 'access_token'})\n"
        "or, with a legacy key (the two fields of kaggle.json),\n"
        "  export KAGGLE_USERNAME=<user> KAGGLE_KEY=<key>      (or save kaggle.json as "
        f"{config / 'kaggle.json'}, chmod 600)\n"
        "or run `kaggle auth login` (newest kaggle CLI)."
    )


def _credentials_in(folder: Path, env: Mapping[str, str]) -> str | None:
    """The credentials file the CLI would use in ``folder``; raises on a kaggle.json with one field only."""
    for name in ("access_token", "access_token.txt"):
        if (folder / name).is_file() and (folder / name).read_text(encoding="utf-8").strip():
            return str(folder / name)
    if _json_object(folder / "credentials.json").get("refresh_token"):
        return str(folder / "credentials.json")
    config = _json_object(folder / "kaggle.json")
    if config.get("username") and config.get("key"):
        return str(folder / "kaggle.json")
    if (folder / "kaggle.json").is_file() and (config.get("username") or config.get("key")):
        missing = "key" if config.get("username") else "username"
        raise KaggleSetupError(
            f"{folder / 'kaggle.json'} has no '{missing}'; it needs both "
            f'{{"username": ..., "key": ...}}.\n' + credentials_help(env)
        )
    return None


def find_credentials(env: Mapping[str, str] = os.environ) -> str:
    """Where the kaggle CLI will find credentials; raises with exactly what to set when it will not."""
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME + KAGGLE_KEY"
    for folder in kaggle_config_dirs(env):
        found = _credentials_in(folder, env)
        if found:
            return found
    if env.get("KAGGLE_USERNAME") or env.get("KAGGLE_KEY"):
        have, missing = (
            ("KAGGLE_USERNAME", "KAGGLE_KEY") if env.get("KAGGLE_USERNAME") else ("KAGGLE_KEY", "KAGGLE_USERNAME")
        )
        raise KaggleSetupError(
            f"{have} is set but {missing} is not: export {missing}=<...> too.\n" + credentials_help(env)
        )
    raise KaggleSetupError(credentials_help(env))


def kaggle_username(user: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """``--user``, else $KAGGLE_USERNAME, else the username in the CLI's kaggle.json / credentials.json."""
    if user:
        return user
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    for folder in kaggle_config_dirs(env):
        for name in ("kaggle.json", "credentials.json"):
            found = _json_object(folder / name).get("username")
            if found:
                return found
    raise KaggleSetupError("Kaggle username unknown: pass --user YOUR_KAGGLE_USERNAME or export KAGGLE_USERNAME=...")


def kaggle_executable(env: Mapping[str, str] = os.environ) -> str:
    found = shutil.which("kaggle", path=env.get("PATH"))
    if not found:
        raise KaggleSetupError(
            "the `kaggle` command is not on PATH. Install it with `pip install kaggle` "
            "(or `pip install 'latentface[kaggle]'`) and check with `kaggle --version`."
        )
    return found


def check_kaggle_works(executable: str, env: Mapping[str, str] = os.environ) -> str:
    """``kaggle --version`` (the first call that fails with a traceback when the CLI is broken); returns
    its answer, raises naming the missing module and the fix (kaggle 2.2.5 imports ``six`` undeclared)."""
    try:
        result = subprocess.run([executable, "--version"], env=dict(env), text=True, capture_output=True)
    except OSError as error:
        raise KaggleSetupError(
            f"`{executable} --version` could not start ({error}); reinstall: pip install kaggle"
        ) from None
    if result.returncode == 0:
        return (result.stdout or "").strip()
    output = f"{result.stderr or ''}\n{result.stdout or ''}"
    missing = re.findall(r"ModuleNotFoundError: No module named '([^']+)'", output)
    if missing:
        module = missing[-1].split(".")[0]
        raise KaggleSetupError(
            f"the kaggle CLI ({executable}) cannot start: it needs the Python module '{module}', which is not "
            f"installed. Fix: pip install {module} (or pip install 'latentface[kaggle]'), then check with "
            "`kaggle --version`."
        )
    last = output.strip().splitlines()[-1] if output.strip() else "no output"
    raise KaggleSetupError(
        f"`kaggle --version` failed with exit status {result.returncode} ({last}); "
        "reinstall it with pip install -U kaggle (or pip install 'latentface[kaggle]')"
    )


def cli_version(answer: str) -> tuple[int, ...] | None:
    """``(2, 2, 5)`` from ``kaggle --version``'s answer ("Kaggle API 1.7.4.5", "Kaggle CLI 2.2.5"); None if none."""
    match = re.search(r"(\d+(?:\.\d+)+)", answer or "")
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


class KaggleCLI:
    """The official ``kaggle`` command, run in a subprocess (credentials checked first, so the message is ours)."""

    def __init__(self, env: Mapping[str, str] | None = None, check_credentials: bool = True):
        self.env = dict(os.environ if env is None else env)
        self.executable = kaggle_executable(self.env)
        if check_credentials:  # first: kaggle < 1.8 logs in on import, so even --version fails without them
            find_credentials(self.env)
        self.version = check_kaggle_works(self.executable, self.env)

    def require_machine_shape(self) -> None:
        """Refuse a kaggle CLI that drops kernel-metadata.json's machine_shape on ``kernels push``."""
        found = cli_version(self.version)
        needed = ".".join(map(str, MIN_KAGGLE_FOR_PUSH))
        if found is None:
            print(f"warning: cannot read the kaggle CLI's version from {self.version!r}; it needs >= {needed}")
        elif found < MIN_KAGGLE_FOR_PUSH:
            have = ".".join(map(str, found))
            raise KaggleSetupError(
                f"kaggle {have} ({self.executable}) does not send machine_shape with `kernels push`: the kernel "
                f"would not get its GPU T4 x2. `latentface kaggle push` needs kaggle >= {needed} (which needs "
                f"Python >= 3.11): pip install -U 'kaggle>={needed}' (or pip install -U 'latentface[kaggle]')"
            )

    def run(self, args: Sequence[str], check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        command = [self.executable, *map(str, args)]
        print("$ kaggle " + " ".join(map(str, args)), flush=True)
        result = subprocess.run(
            command,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
        )
        if check and result.returncode != 0:
            tail = f":\n{result.stdout.strip()}" if capture and result.stdout else ""
            raise KaggleSetupError(
                f"`kaggle {' '.join(map(str, args))}` failed with exit status {result.returncode}{tail}"
            )
        return result
