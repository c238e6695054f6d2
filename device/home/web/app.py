"""The routes of the review page and its JSON API (Bottle).

Reads are open to whoever reaches the address; a write (a relabel, or its undo, a new empty
reference, a test item) and the camera's live picture need ``Authorization: Bearer <token>`` with
the token of ``web.token_file``, or the cookie of a sign-in link (:mod:`.signin`) made with that
token and sent from the page itself (a cross-site request is refused). The camera is the daemon's:
the page asks for it through :class:`~..camera_requests.CameraRequests` and waits a bounded time. The token is read at each request that needs it, so that ``smartbin web token --force``
takes effect at once. Every answer of ``/api`` is JSON, errors included (``{"error": "..."}``).
"""

from __future__ import annotations

import base64
import functools
import json
import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bottle
import cv2
import numpy as np

from ...config import Config
from ...errors import SmartbinError
from ...records.events import REVIEW_EXTRA_LABELS, add_review, undo_review
from ...records.recorder import is_corruption
from ...records.state import now_iso
from ...vision.chamber import load_reference
from ..camera_requests import Answer, CameraRequests
from . import metrics, queries, signin
from .token import current_token_file, read_token, token_matches, token_path

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_LIMIT = 200
MAX_BODY = 1024  # bytes of a label request
# ?w=N: a copy of the photo N pixels wide (the page asks for its thumbnails' CSS width times the
# screen's pixel density), N rounded up to a step so that the cache holds a few sizes, not every one
THUMB_STEP = 80
THUMB_MIN, THUMB_MAX = 16, 1280
THUMB_CACHE = 128  # thumbnails kept in memory, the newest used (a 160-pixel one is about 5 KB)
SNAPSHOT_MAX = 1280  # pixels on the longer side of a snapshot's JPEG: enough to focus by
SNAPSHOT_WAIT_S = 3.0  # how long a snapshot waits for the daemon (an item in hand comes first)
CAMERA_WAIT_S = 15.0  # ... and a calibration or a test item (a few frames, settling, maybe an item first)
UNDO_S = 60  # how long a relabel can be taken back (the page offers it for 8 s; a slow link gets more)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # nothing but the bin itself: no CDN, no inline script
    # (blob: the snapshot, fetched with the token, shown from the page's own memory)
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
}


def review_labels(config: Config) -> list[str]:
    """What a reviewer may say an item was: the labels the config sorts by, then not_trash and empty."""
    own = [label for label in config.sorting.labels if label not in REVIEW_EXTRA_LABELS]
    return [*own, *REVIEW_EXTRA_LABELS]


def reviewer(request: bottle.BaseRequest) -> str:
    """Who relabels, as far as one shared token can tell: ``web <the client's address>``.

    The peer's address: waitress drops forwarding headers from peers it does not trust.
    """
    return f"web {request.environ.get('REMOTE_ADDR') or 'unknown'}"


class ApiError(bottle.HTTPResponse):
    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(json.dumps({"error": message}), status, **headers)
        self.content_type = "application/json"


def make_app(
    config: Config,
    read: Callable[[], tuple[dict[str, Any], dict[str, Any]]],
    on_review: Callable[[dict[str, Any]], None],
    token_files: Sequence[Path] = (),
    requests: CameraRequests | None = None,
) -> bottle.Bottle:
    """The WSGI app. ``read`` gives (the daemon's status, the tally's snapshot); ``on_review`` hears
    of each review stored; ``token_files`` (default: the config's) as :func:`.token.current_token_file`
    takes them; ``requests``: where to ask the daemon for the camera (None: no camera)."""
    app = bottle.Bottle(catchall=True)
    token_files = tuple(token_files) or (token_path(config),)
    sign_ins = signin.SignIns()
    registry = metrics.make_registry(read)
    labels = review_labels(config)
    events_db = config.paths.events_db
    images_dir = config.paths.images_dir.resolve()

    def current_token() -> tuple[Path, str]:
        """The token file and token that writes are checked against; none is a 401 saying why."""
        path = current_token_file(token_files)
        try:
            return path, read_token(path)
        except SmartbinError as exc:
            raise ApiError(401, f"relabelling is off: {exc}", WWW_Authenticate="Bearer") from None

    def signed_in() -> bool:
        """Whether this browser holds a sign-in cookie that a write would accept (the token file is
        read only for a browser that has one)."""
        cookie = _cookie()
        if cookie is None:
            return False
        try:
            _, token = current_token()
        except ApiError:
            return False
        return signin.session_valid(cookie, token)

    def db(write: bool = False) -> sqlite3.Connection:
        try:
            return queries.connect(events_db, write=write)
        except FileNotFoundError:
            if events_db.is_dir():
                raise ApiError(
                    503, f"{events_db} is a folder, not an event log; fix paths.events_db"
                ) from None
            raise ApiError(503, f"no event log at {events_db} yet; no item has been recorded") from None
        except sqlite3.Error as exc:
            raise ApiError(503, f"cannot open the event log {events_db}: {exc}") from None

    def event_log_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
        """A bottle plugin: an event log that fails a query is a 503 naming it, not a 500 and a
        traceback in the bin's log."""

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except sqlite3.Error as exc:
                hint = (
                    "it is damaged; the bin moves it aside at its next item"
                    if is_corruption(exc)
                    else "try again"
                )
                raise ApiError(503, f"cannot use the event log {events_db}: {exc}; {hint}") from None

        return guarded

    app.install(event_log_errors)

    @app.hook("after_request")
    def _headers() -> None:
        for name, value in SECURITY_HEADERS.items():
            bottle.response.set_header(name, value)
        if bottle.request.path.startswith("/api/") and "Cache-Control" not in bottle.response.headers:
            bottle.response.set_header("Cache-Control", "no-store")

    def _json_error(error: bottle.HTTPError) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps({"error": error.body if isinstance(error.body, str) else error.status_line})

    app.default_error_handler = _json_error

    @app.get("/")
    def page() -> Any:
        return bottle.static_file("index.html", root=STATIC_DIR)

    @app.get("/static/<name:re:[a-z0-9_-]+\\.(?:js|css|svg)>")
    def static(name: str) -> Any:
        return bottle.static_file(name, root=STATIC_DIR)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Cheap: what the observer last published, never the event log."""
        status, _ = read()
        last = status.get("last_item") or {}
        return {"ok": True, "state": status.get("state"), "last_item_at": last.get("ts")}

    @app.get("/api/status")
    def api_status() -> dict[str, Any]:
        status, tally = read()
        started = status.get("started")
        uptime = (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds() if started else None
        return {
            **status,
            "uptime_s": round(uptime, 1) if uptime is not None else None,
            "counts": tally["compartments"],
            "faults": tally["faults"],
            "review_labels": labels,
            "signed_in": signed_in(),
        }

    @app.get("/api/events")
    def api_events() -> dict[str, Any]:
        query = bottle.request.query
        limit = _int_arg(query.get("limit"), "limit", default=20, low=1, high=MAX_LIMIT)
        before = _int_arg(query.get("before"), "before", default=None, low=1, high=queries.MAX_ID)
        wanted = query.get("filter") or None
        if wanted is not None and wanted not in queries.FILTERS:
            raise ApiError(400, f"filter: expected one of {', '.join(queries.FILTERS)}, got {wanted!r}")
        connection = db()
        try:
            events = queries.list_events(connection, limit=limit, before=before, filter=wanted)
        finally:
            connection.close()
        more = len(events) == limit
        return {"events": events, "next_before": events[-1]["id"] if more else None}

    @app.get("/api/events/<event_id:int>/photo")
    def api_photo(event_id: int) -> Any:
        width = _int_arg(bottle.request.query.get("w"), "w", default=None, low=THUMB_MIN, high=THUMB_MAX)
        _check_event_id(event_id)
        connection = db()
        try:
            path = queries.image_path(connection, event_id)
        except KeyError:
            raise ApiError(404, f"no event {event_id}") from None
        finally:
            connection.close()
        photo = Path(path).resolve() if path else None
        if photo is None or not photo.is_relative_to(images_dir) or not photo.is_file():
            why = "no photo was saved" if path is None else "its photo is no longer kept"
            raise ApiError(404, f"event {event_id}: {why}")
        headers = {"Cache-Control": "public, max-age=3600"}
        if width is None:
            return bottle.static_file(photo.name, root=photo.parent, mimetype="image/jpeg", headers=headers)
        stepped = min(THUMB_MAX, -(-width // THUMB_STEP) * THUMB_STEP)
        thumbnail = _thumbnail(photo, stepped, photo.stat().st_mtime_ns)
        return bottle.HTTPResponse(thumbnail, **headers, Content_Type="image/jpeg")

    @app.get("/api/counts")
    def api_counts() -> dict[str, Any]:
        """How many items each filter shows, of the newest ``queries.COUNT_WINDOW``."""
        connection = db()
        try:
            return queries.count_events(connection)
        finally:
            connection.close()

    def authorize() -> None:
        """A write goes on only with the token, or a sign-in cookie sent from the page itself (401)."""
        _, token = current_token()
        if not token_matches(_authorization(), token):
            if not signin.session_valid(_cookie(), token):
                raise ApiError(
                    401,
                    "a valid token is needed to relabel or use the camera (Authorization: Bearer ...), "
                    "or a sign-in link ('smartbin web link')",
                    WWW_Authenticate="Bearer",
                )
            _refuse_other_sites()

    @app.post("/api/events/<event_id:int>/label")
    def api_label(event_id: int) -> dict[str, Any]:
        authorize()
        label = _label_from_body(labels)
        _check_event_id(event_id)
        connection = db(write=True)
        try:
            review = add_review(connection, event_id, label, reviewer(bottle.request), now_iso())
        except KeyError:
            raise ApiError(404, f"no event {event_id}") from None
        finally:
            connection.close()
        on_review(review)
        return {"review": review}

    @app.get("/signin")
    def signin_page() -> Any:
        """The page a sign-in link opens; its code stays in the fragment, which no request carries."""
        return bottle.HTTPResponse(
            signin.PAGE, Content_Type="text/html; charset=utf-8", Cache_Control="no-store"
        )

    @app.get("/signin.js")
    def signin_script() -> Any:
        return bottle.HTTPResponse(signin.SCRIPT, Content_Type="text/javascript; charset=utf-8")

    @app.post("/api/signin")
    def api_signin() -> dict[str, Any]:
        _refuse_other_sites()
        body = _json_body('{"code": "..."}')
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code or not code.isascii():  # a lone surrogate cannot be hashed
            raise ApiError(400, 'code: expected {"code": "..."} from a sign-in link')
        token_file, token = current_token()
        try:
            sign_ins.redeem(token_file, code)
        except signin.SignInRefused as exc:
            raise ApiError(401, str(exc)) from None
        bottle.response.set_cookie(
            signin.COOKIE,
            signin.new_session(token),
            max_age=signin.SESSION_LIFE_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=bottle.request.environ.get("wsgi.url_scheme") == "https",
        )
        return {"signed_in": True}

    @app.post("/api/events/<event_id:int>/undo")
    def api_undo(event_id: int) -> dict[str, Any]:
        """Take back a relabel of the last ``UNDO_S`` seconds: its review is deleted, so the one before
        it (or the bin's own label) counts again; answers the event's newest review left, or null."""
        authorize()
        review_id = _review_from_body()
        _check_event_id(event_id)
        not_before = (datetime.now(UTC) - timedelta(seconds=UNDO_S)).isoformat(timespec="milliseconds")
        connection = db(write=True)
        try:
            left = undo_review(connection, event_id, review_id, not_before)
        except KeyError:
            raise ApiError(404, f"event {event_id} has no review {review_id}") from None
        except LookupError as exc:
            raise ApiError(409, f"review {review_id} cannot be undone: {exc}") from None
        finally:
            connection.close()
        return {"undone": review_id, "review": left}

    def ask_camera(kind: str, timeout: float) -> Any:
        """The daemon's answer to ``kind``; a 503 or 504 saying why there is none, a 409 with
        the daemon's reason when it refused."""
        if requests is None:
            raise ApiError(503, "no camera: this page runs without the bin's daemon")
        answer: Answer | None = requests.ask(kind, timeout)
        if answer is None:
            if read()[0].get("busy"):
                raise ApiError(503, "the bin is busy with an item; try again", Retry_After="1")
            raise ApiError(504, f"the bin did not answer within {timeout:g} s")
        if answer.error is not None:
            raise ApiError(409, answer.error)
        return answer.value

    @app.get("/api/camera/snapshot")
    def api_snapshot() -> Any:
        """A new frame of the chamber with its light on, as JPEG (token or sign-in: a live picture)."""
        authorize()
        snapshot = ask_camera("snapshot", SNAPSHOT_WAIT_S)
        return bottle.HTTPResponse(
            _jpeg(snapshot["frame"]), Content_Type="image/jpeg", X_Taken=snapshot["taken"]
        )

    @app.get("/api/camera/reference")
    def api_reference() -> Any:
        """The empty reference as JPEG (open, as the items' photos are); its date is in the status."""
        try:
            found = load_reference(config.paths.state_dir)
        except SmartbinError as exc:
            raise ApiError(404, str(exc)) from None
        if found is None:
            raise ApiError(404, "no empty reference yet: store one (lid closed, chamber empty)")
        image, meta = found
        return bottle.HTTPResponse(_jpeg(image), Content_Type="image/jpeg", X_Taken=meta["taken"])

    @app.post("/api/camera/calibrate")
    def api_calibrate() -> dict[str, Any]:
        """``smartbin calibrate`` by the daemon, between items: answers the new reference's status."""
        authorize()
        return {"empty_reference": ask_camera("calibrate", CAMERA_WAIT_S)}

    @app.post("/api/camera/test")
    def api_test() -> dict[str, Any]:
        """What the bin would do with the item in the chamber now, without moving or recording it;
        the frame it judged as a data: URL."""
        authorize()
        result = dict(ask_camera("test", CAMERA_WAIT_S))
        frame = result.pop("frame")
        photo = _jpeg(frame) if frame is not None else None
        result["photo"] = "data:image/jpeg;base64," + base64.b64encode(photo).decode() if photo else None
        return result

    @app.get("/metrics")
    def prometheus() -> Any:
        return bottle.HTTPResponse(metrics.render(registry), Content_Type=metrics.CONTENT_TYPE)

    return app


def _int_arg(
    text: str | None, name: str, *, default: int | None, low: int, high: int | None = None
) -> int | None:
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < low or (high is not None and int(text) > high):
        bounds = f"{low}-{high}" if high is not None else f"{low} or more"
        raise ApiError(400, f"{name}: expected an integer {bounds}, got {text!r}")
    return int(text)


def _authorization() -> str | None:
    """The Authorization header; one that is not text (bytes past ASCII) is no token at all."""
    try:
        return bottle.request.get_header("Authorization")
    except UnicodeDecodeError:
        return None


def _cookie() -> str | None:
    try:
        return bottle.request.get_cookie(signin.COOKIE)
    except UnicodeDecodeError:
        return None


def _refuse_other_sites() -> None:
    """A write carried by the cookie must come from the page itself: a browser names the site that
    sent it (``Sec-Fetch-Site``, ``Origin``), and the cookie is ``SameSite=Strict`` as well.

    The host is compared, not the scheme: behind a TLS proxy the page is https while this is http.
    """
    request = bottle.request
    site = request.get_header("Sec-Fetch-Site")
    origin = request.get_header("Origin")
    host = request.get_header("Host")
    if (site is not None and site != "same-origin") or (
        origin is not None and urllib.parse.urlsplit(origin).netloc != host
    ):
        raise ApiError(403, "a write from another site is refused; use the bin's own page")


def _check_event_id(event_id: int) -> None:
    """An id past SQLite's integers names no event (and SQLite would refuse to look it up)."""
    if event_id > queries.MAX_ID:
        raise ApiError(404, f"no event {event_id}")


def _json_body(example: str) -> Any:
    """The request's small JSON body, or None when it is not JSON; ``example`` for the 413."""
    request = bottle.request
    if request.content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415, f"expected Content-Type: application/json, got {request.content_type or 'none'!r}"
        )
    if request.content_length > MAX_BODY:
        raise ApiError(413, f"expected a small JSON body such as {example} (at most {MAX_BODY} bytes)")
    try:
        return json.loads(request.body.read(MAX_BODY) or b"null")
    except (
        ValueError,
        UnicodeDecodeError,
        RecursionError,
    ):  # RecursionError: [[[[... nested past Python's stack
        return None


def _label_from_body(labels: list[str]) -> str:
    body = _json_body('{"label": "glass"}')
    label = body.get("label") if isinstance(body, dict) else None
    if label not in labels:
        got = repr(label) if isinstance(body, dict) else "no JSON object"
        raise ApiError(400, f'label: expected one of {", ".join(labels)} as {{"label": "..."}}, got {got}')
    return label


def _review_from_body() -> int:
    body = _json_body('{"review": 12}')
    review = body.get("review") if isinstance(body, dict) else None
    if type(review) is not int or not 1 <= review <= queries.MAX_ID:
        got = repr(review) if isinstance(body, dict) else "no JSON object"
        raise ApiError(400, f'review: expected the id of the review to undo as {{"review": 12}}, got {got}')
    return review


def _jpeg(rgb: np.ndarray) -> bytes:
    """An RGB frame as JPEG, at most :data:`SNAPSHOT_MAX` pixels on its longer side."""
    scale = min(1.0, SNAPSHOT_MAX / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ApiError(500, "cannot encode the frame as JPEG")
    return data.tobytes()


@functools.lru_cache(maxsize=THUMB_CACHE)
def _thumbnail(photo: Path, width: int, mtime_ns: int) -> bytes:
    """A JPEG ``width`` pixels wide; libjpeg decodes at 1/4 or 1/2 size when that is still wide enough
    (a photo narrower than ``width`` is scaled up: the page asked for its screen's pixels).

    Cached: every viewer of the page asks for the same few; ``mtime_ns`` keys a replaced photo anew.
    """
    for flag in (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_COLOR):
        rgb = cv2.imread(str(photo), flag)
        if rgb is None:
            raise ApiError(404, f"{photo.name}: cannot be decoded")
        if rgb.shape[1] >= width:
            break
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 75])
    if not ok:
        raise ApiError(500, f"{photo.name}: cannot make a thumbnail")
    return data.tobytes()
