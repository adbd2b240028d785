"""The one format/version check: a reader accepts its own format name and major version only."""
from __future__ import annotations

from typing import Any

from ..errors import UserError


def major(version: Any, where: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise UserError(f"{where}: format version {version!r} is not a semantic version: the manifest is damaged; "
                        "re-create the directory with the compress stage that wrote it") from None


def check_format(fmt: Any, name: str, version: str, where: str, what: str, fix: str) -> str:
    """The version found in `fmt` ({name, version}) after checking name and major; else a UserError that
    names `what` was found and says `fix`."""
    if not isinstance(fmt, dict) or fmt.get("name") != name:
        found = fmt.get("name") if isinstance(fmt, dict) else fmt
        raise UserError(f"{where} describes format {found!r}, not {name!r}: this is not a {what}")
    found = fmt.get("version", "?")
    if major(found, where) != major(version, where):
        raise UserError(f"{where} uses {what} format {found}, but this llama-compress reads major version "
                        f"{major(version, where)} ({version}): {fix}")
    return str(found)
