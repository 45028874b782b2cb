"""Fetch the OHIF viewer's prebuilt ``dist/`` at the pinned version, verified, into a cache.

The viewer is the npm package ``@ohif/app`` (its ``files`` are ``dist/`` and
the README: a production build, no ``node_modules`` needed). The version and
npm's ``dist.integrity`` (sha512 of the tarball, Subresource-Integrity form)
are pinned in ``ohif_pin.json`` beside this module; nothing else is trusted.

Invariants:

- The tarball comes from ``npm pack @ohif/app@VERSION`` (the npm client, as
  set up on the machine), into a temporary directory.
- Its sha512 is compared with the pin **before** anything is extracted; a
  mismatch deletes it and fails, naming both digests.
- Only regular files and directories under ``package/dist/`` are extracted,
  with :mod:`tarfile`'s ``data`` filter (no absolute paths, no ``..``, no
  links, no devices), into a temporary sibling of the target, which is then
  renamed into place: a reader sees the whole viewer or none.
- A ``.usarchive-integrity`` file in the installed directory records the
  integrity it was verified against; a later setup with the same pin does
  nothing, one with another pin installs beside it.

Run ``python -m archive.web.ohif_install`` (``scripts/ohif-setup.sh`` does,
and ``make test``); ``usarchive web --ohif`` refuses to start without it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from archive.errors import ArchiveError

logger = logging.getLogger(__name__)

#: Environment variable naming the cache directory (default: ``$XDG_CACHE_HOME/usarchive/ohif``).
CACHE_ENV = "USARCHIVE_OHIF_CACHE"
#: Marker file of a verified install.
MARKER = ".usarchive-integrity"
#: ``npm pack`` of a 50 MB tarball; bounded so a hung registry fails the setup.
NPM_TIMEOUT_S = 600.0


class ViewerSetupError(ArchiveError):
    """The OHIF viewer could not be fetched, verified or found."""


@dataclass(frozen=True)
class OhifPin:
    """The pinned npm package of the viewer.

    Attributes
    ----------
    package : str
        npm package name (``@ohif/app``).
    version : str
        Exact version.
    integrity : str
        npm's ``dist.integrity``: ``sha512-`` and the base64 digest of the tarball.
    """

    package: str
    version: str
    integrity: str

    @property
    def spec(self) -> str:
        """``package@version`` for npm."""
        return f"{self.package}@{self.version}"


def load_pin() -> OhifPin:
    """The pin recorded in ``archive/web/ohif_pin.json``."""
    raw = json.loads(resources.files("archive.web").joinpath("ohif_pin.json").read_text("utf-8"))
    pin = OhifPin(package=raw["package"], version=raw["version"], integrity=raw["integrity"])
    if not pin.integrity.startswith("sha512-"):
        raise ViewerSetupError(
            f"ohif_pin.json: integrity {pin.integrity!r} is not a sha512 (expected 'sha512-<base64>' "
            "as `npm view @ohif/app@VERSION dist.integrity` prints it); fix the pin"
        )
    return pin


def cache_root() -> Path:
    """Where viewer builds are cached: ``$USARCHIVE_OHIF_CACHE`` or ``$XDG_CACHE_HOME/usarchive/ohif``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "usarchive" / "ohif"


def dist_dir(pin: OhifPin | None = None, root: Path | None = None) -> Path:
    """The ``dist/`` directory of the pinned version in the cache (it may not exist yet)."""
    pin = pin or load_pin()
    return (root or cache_root()) / f"ohif-app-{pin.version}" / "dist"


def installed_dist(pin: OhifPin | None = None, root: Path | None = None) -> Path:
    """The verified ``dist/`` of the pinned version.

    Raises
    ------
    ViewerSetupError
        If it is not installed, or was verified against another integrity.
    """
    pin = pin or load_pin()
    dist = dist_dir(pin, root)
    marker = dist.parent / MARKER
    if not marker.is_file() or marker.read_text("ascii").strip() != pin.integrity:
        raise ViewerSetupError(
            f"OHIF viewer {pin.spec}: expected a verified install in {dist.parent}, but found none; "
            "run `bash scripts/ohif-setup.sh` (or `python -m archive.web.ohif_install`) once"
        )
    if not (dist / "index.html").is_file():
        raise ViewerSetupError(
            f"OHIF viewer {pin.spec}: {dist} has no index.html (a damaged install); delete "
            f"{dist.parent} and run `bash scripts/ohif-setup.sh` again"
        )
    return dist


def sri_sha512(path: Path) -> str:
    """The Subresource-Integrity sha512 (``sha512-<base64>``) of a file, as npm records it."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def verify_tarball(tarball: Path, pin: OhifPin) -> None:
    """Raise unless ``tarball``'s sha512 is the pinned one."""
    got = sri_sha512(tarball)
    if got != pin.integrity:
        raise ViewerSetupError(
            f"{tarball.name}: expected the integrity pinned for {pin.spec} ({pin.integrity}), but the "
            f"tarball has {got}; nothing was installed. If the pin was moved on purpose, record "
            f"`npm view {pin.spec} dist.integrity` in archive/web/ohif_pin.json"
        )


def npm_pack(pin: OhifPin, into: Path) -> Path:
    """``npm pack`` the pinned version into ``into``; the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise ViewerSetupError(
            "npm: not found on PATH; install Debian's npm (`bash scripts/system-deps.sh` does)"
        )
    try:
        done = subprocess.run(
            [npm, "pack", pin.spec, "--json", "--pack-destination", str(into)],
            cwd=into,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ViewerSetupError(f"npm pack {pin.spec}: no answer in {NPM_TIMEOUT_S:.0f} s; try again") from exc
    if done.returncode != 0:
        raise ViewerSetupError(
            f"npm pack {pin.spec} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        )
    filename = json.loads(done.stdout)[0]["filename"]
    return into / Path(filename).name


def extract_dist(tarball: Path, target: Path) -> int:
    """Extract ``package/dist/**`` of ``tarball`` into ``target`` (which must not exist); file count."""
    count = 0
    with tarfile.open(tarball, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith("package/dist/") or not (member.isfile() or member.isdir()):
                continue
            member.name = member.name.removeprefix("package/")
            members.append(member)
            count += member.isfile()
        if count == 0:
            raise ViewerSetupError(
                f"{tarball.name}: expected the prebuilt viewer under package/dist/, but the tarball has "
                "none; pin a version of @ohif/app that ships dist/"
            )
        target.mkdir(parents=True)
        try:
            tar.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise ViewerSetupError(
                f"{tarball.name}: refused to extract {exc.tarinfo.name!r} ({exc}); the tarball is not a "
                "plain npm package, nothing was installed"
            ) from exc
    return count


def install(pin: OhifPin | None = None, root: Path | None = None, *, tarball: Path | None = None) -> Path:
    """Install the pinned viewer into the cache unless it already is; its ``dist/``.

    Parameters
    ----------
    pin : OhifPin, optional
        The version and integrity (default: :func:`load_pin`).
    root : Path, optional
        Cache directory (default: :func:`cache_root`).
    tarball : Path, optional
        An already downloaded tarball to verify and install instead of running ``npm pack``.

    Raises
    ------
    ViewerSetupError
        If npm fails, the tarball's integrity is not the pinned one, or it has no ``dist/``.
    """
    pin = pin or load_pin()
    root = root or cache_root()
    try:
        return installed_dist(pin, root)
    except ViewerSetupError:
        pass
    final = dist_dir(pin, root).parent
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ohif-", dir=root) as tmp:
        work = Path(tmp)
        if tarball is None:
            tarball = npm_pack(pin, work)
        verify_tarball(tarball, pin)
        staged = work / "staged"
        count = extract_dist(tarball, staged)
        (staged / MARKER).write_text(pin.integrity + "\n", "ascii")
        if final.exists():
            shutil.rmtree(final)  # an unverified or damaged earlier install
        staged.replace(final)
    logger.info("OHIF viewer %s: %d files verified and installed in %s", pin.spec, count, final)
    return final / "dist"


def main(argv: list[str] | None = None) -> int:
    """``python -m archive.web.ohif_install [--cache DIR] [--tarball FILE]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help=f"cache directory (default: ${CACHE_ENV} or XDG cache)")
    parser.add_argument("--tarball", type=Path, help="verify and install this tarball instead of npm pack")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        dist = install(root=args.cache, tarball=args.tarball)
    except ViewerSetupError as exc:
        print(f"ohif setup: {exc}", file=sys.stderr)
        return 1
    print(dist)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
