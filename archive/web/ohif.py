"""``usarchive web --ohif``: the OHIF viewer, its generated ``app-config.js`` and our landing page.

Layout of the origin (one origin, so the browser needs no CORS)::

    /                       landing page (:mod:`archive.web.landing`): studies, procedure keys, review status
    /app-config.js          generated here (:func:`app_config_js`), never the one in dist/
    /ohif, /ohif/...        the viewer (OHIF's React routes; ``routerBasename = "/ohif"``): index.html
    /<root>/...             DICOMweb (:mod:`archive.web.app`), behind the bearer token
    anything else           a file of OHIF's dist/ (bundles, wasm, fonts, assets)

Why the viewer's files sit at the origin's root while its pages are under
``/ohif``: the npm package's prebuilt ``dist/`` was built with a public path
of ``/`` compiled into its bundles (``__webpack_require__.p = "/"`` in nine
of them, ``/app.bundle…js`` in index.html); OHIF's documentation asks for a
rebuild with ``PUBLIC_URL`` to move it. We serve the files unchanged and move
only the router (``routerBasename``, a run-time setting). Paths of the
DICOMweb root win over dist/ files (none of which is under it).

Authentication: the viewer's files, app-config.js and the landing page's shell
hold no patient data and are served without a token; every DICOMweb request
carries ``Authorization: Bearer <token>``. OHIF takes that header from its
``userAuthenticationService``; app-config.js sets the service's
``getAuthorizationHeader`` (in the data source's documented
``onConfiguration`` hook) to read the token from the tab's ``sessionStorage``,
where the landing page put it. OHIF's own ``?token=`` URL parameter (viewer
routes only; it removes it from the address bar) works as well. The token is
never written into a file or a URL by us. A 401 from DICOMweb sends the
viewer back to the landing page to ask for a token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from archive.errors import ConfigError
from archive.web.settings import WebSettings

if TYPE_CHECKING:
    from archive.config import Configuration

logger = logging.getLogger(__name__)

#: Where the viewer's pages live (OHIF ``routerBasename``).
VIEWER_BASE = "/ohif"
#: sessionStorage key of the bearer token (shared by the landing page and app-config.js).
TOKEN_KEY = "usarchive.token"


@dataclass(frozen=True)
class QidoCapabilities:
    """What our QIDO-RS implements, as OHIF's DICOMweb data source flags say it.

    Each is checked against a live server in tests/archive/web/test_ohif_config.py.

    Attributes
    ----------
    supports_fuzzy_matching : bool
        ``fuzzymatching=true`` (Person Name prefix per component, :mod:`archive.web.qido`).
    supports_wildcard : bool
        ``*`` / ``?`` in string keys (the C-FIND matcher, PS3.4 C.2.2.2.4); OHIF then
        sends ``PatientName=*doe*`` for its search box.
    include_field : bool
        ``includefield`` (and ``all``) adds return keys; OHIF then asks for the
        study description and modalities in the study list query itself.
    """

    supports_fuzzy_matching: bool = True
    supports_wildcard: bool = True
    include_field: bool = True


#: The flags of this server's QIDO-RS.
QIDO_CAPABILITIES = QidoCapabilities()


def app_config_js(dicomweb_root: str, capabilities: QidoCapabilities = QIDO_CAPABILITIES) -> str:
    """OHIF's ``app-config.js`` for a viewer served beside our DICOMweb root.

    Parameters
    ----------
    dicomweb_root : str
        Path of the DICOMweb root on this origin, e.g. ``/dicomweb``; the
        browser makes it absolute with ``window.location.origin``.
    capabilities : QidoCapabilities
        The QIDO-RS flags.

    Returns
    -------
    str
        JavaScript assigning ``window.config`` a function (OHIF's documented
        form that receives the ``servicesManager``).
    """
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "usarchive",
        "configuration": {
            "friendlyName": "usarchive",
            "name": "usarchive",
            "qidoSupportsIncludeField": capabilities.include_field,
            "supportsFuzzyMatching": capabilities.supports_fuzzy_matching,
            "supportsWildcard": capabilities.supports_wildcard,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "staticWado": False,
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    settings = {
        "routerBasename": VIEWER_BASE,
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "defaultDataSourceName": "usarchive",
        "investigationalUseDialog": {"option": "never"},
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "maxNumberOfWebWorkers": 2,
        "showErrorDetails": "always",
    }
    return _APP_CONFIG_TEMPLATE % {
        "settings": json.dumps(settings, indent=2),
        "source": json.dumps(source, indent=2),
        "root": json.dumps(dicomweb_root),
        "token_key": json.dumps(TOKEN_KEY),
        "landing": json.dumps("/"),
    }


_APP_CONFIG_TEMPLATE = """\
/* Generated by usarchive web --ohif (archive/web/ohif.py); not OHIF's dist/app-config.js. */
window.config = function usarchiveConfig({ servicesManager }) {
  const root = window.location.origin + %(root)s;
  const tokenKey = %(token_key)s;
  const bearer = () => {
    const token = window.sessionStorage.getItem(tokenKey);
    return token ? { Authorization: 'Bearer ' + token } : {};
  };
  const source = %(source)s;
  Object.assign(source.configuration, { qidoRoot: root, wadoRoot: root, wadoUriRoot: root });
  source.configuration.onConfiguration = (configuration) => {
    const auth = servicesManager.services.userAuthenticationService;
    if (window.sessionStorage.getItem(tokenKey)) {
      auth.setServiceImplementation({ getAuthorizationHeader: bearer });
    }
    return configuration;
  };
  const settings = %(settings)s;
  settings.dataSources = [source];
  settings.httpErrorHandler = (error) => {
    if (error && error.status === 401) {
      const back = window.location.pathname + window.location.search;
      window.location.assign(%(landing)s + '?next=' + encodeURIComponent(back));
    }
  };
  return settings;
};
"""


class ViewerFiles(StaticFiles):
    """OHIF's ``dist/``; any path under :data:`VIEWER_BASE` is its single page (``index.html``)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at ``path``, or index.html for a viewer route."""
        route = "/" + path.lstrip("/")
        if route == VIEWER_BASE or route.startswith(VIEWER_BASE + "/"):
            return await super().get_response("index.html", scope)
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code == 404:
                raise HTTPException(
                    404, f"{route}: no such file of the OHIF viewer; the viewer is at {VIEWER_BASE}/"
                ) from None
            raise


class _ByRoot:
    """Requests under the DICOMweb root to ``dicomweb``, the rest to ``frontend``."""

    def __init__(self, root: str, dicomweb: ASGIApp, frontend: ASGIApp) -> None:
        self.root, self.dicomweb, self.frontend = root, dicomweb, frontend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        inside = scope["type"] == "lifespan" or path == self.root or path.startswith(self.root + "/")
        await (self.dicomweb if inside else self.frontend)(scope, receive, send)


def with_viewer(
    dicomweb: Starlette, settings: WebSettings, dist: Path, *, audit_report: Path | None
) -> ASGIApp:
    """The DICOMweb application with the OHIF viewer and the landing page beside it.

    Parameters
    ----------
    dicomweb : Starlette
        :func:`archive.web.app.create_app`'s application; the landing page's
        JSON route is added to it (so it is behind the token like the rest),
        and the approved annotations of its archive are stored as SR
        (:func:`archive.web.reports.publish_measurement_reports`) first and
        again before study requests once approvals changed
        (:class:`archive.web.reports.PublishingReports`).
    settings : WebSettings
        Its settings (the root path).
    dist : Path
        The verified OHIF ``dist/`` (:func:`archive.web.ohif_install.installed_dist`).
    audit_report : Path, optional
        ``[web] audit_report``: the HTML audit report the landing page links.

    Raises
    ------
    ConfigError
        If the DICOMweb root is the origin's root (``[web] root = ""``), where it
        would shadow the viewer's files.
    """
    from archive.web.landing import landing_page, landing_routes
    from archive.web.reports import PublishingReports, ReportPublisher

    if not settings.root:
        raise _root_error()
    dicomweb.router.routes.extend(landing_routes(dicomweb, settings, audit_report))
    publisher = ReportPublisher(dicomweb.state.context.archive)
    publisher.refresh()  # approved annotations as SR, for OHIF; new approvals before study requests
    config = app_config_js(settings.root)

    def app_config(request: Request) -> Response:
        return Response(config, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    def viewer_page(request: Request) -> Response:
        return FileResponse(dist / "index.html", headers={"Cache-Control": "no-cache"})

    frontend = Starlette(
        routes=[
            Route("/", landing_page(settings.root), methods=["GET"]),
            Route("/app-config.js", app_config, methods=["GET"]),
            Route(VIEWER_BASE, viewer_page, methods=["GET"]),
            Mount("/", app=ViewerFiles(directory=dist)),
        ]
    )
    logger.info("web: OHIF viewer from %s at %s/, DICOMweb at %s", dist, VIEWER_BASE, settings.root)
    return _ByRoot(settings.root, PublishingReports(dicomweb, publisher), frontend)


def viewer_for(configuration: Configuration, settings: WebSettings) -> Callable[[Starlette], ASGIApp]:
    """What ``usarchive web --ohif`` puts in front of DICOMweb (for :class:`~archive.web.server.WebServer`).

    Raises
    ------
    ViewerSetupError
        If the pinned viewer is not installed (the message says how to install it).
    ConfigError
        If the DICOMweb root is ``''``.
    """
    from archive.web.ohif_install import installed_dist

    dist = installed_dist()
    raw = configuration.values.get("web.audit_report")
    audit_report = raw if isinstance(raw, Path) else None
    if not settings.root:  # checked before the archive is opened, too
        raise _root_error()
    return lambda dicomweb: with_viewer(dicomweb, settings, dist, audit_report=audit_report)


def _root_error() -> ConfigError:
    return ConfigError(
        "[web] root: usarchive web --ohif serves the viewer at the origin's root, so DICOMweb needs "
        "its own path, but root is ''; set e.g. root = \"/dicomweb\""
    )
