"""Schemathesis hooks for Prewarm's API contract test (scripts/schemathesis.sh run).

- Every call is made as tenant A (PREWARM_ST_KEY_A); /admin/* with PREWARM_ST_ADMIN_TOKEN if set.
- Generated ids are sometimes replaced by real ones (A's private template, B's public template,
  A's design), so that calls reach the 2xx paths, not only 404s.
- Valid (positive) cases get what no schema can state, so that valid data is accepted: an
  `If-Match` holding the template's current ETag (state, like an id: a generated one is stale and
  answers 412), image parts whose bytes are an image (the document says which types; a generator
  cannot make their magic bytes, so random bytes answer 415), and pool-policy windows that fire
  (a cron expression that parses in a time zone that exists, a one-off window that ends after it
  starts) with targets ordered within `[min, max]`, and an `Idempotency-Key` of their own (one
  generated twice for two different requests is a reuse: 422). Invalid (negative) cases are left
  as generated.
- Two checks besides schemathesis' own:
  tenant_isolation      whatever A read with a 200 that is private to A (its designs, its private
                        templates) is replayed with B's key: B must get 404 for it, and must not
                        find it in any list; an edit A made must be refused to B (403 public, 404 private).
  opaque_server_errors  a 5xx body is the error envelope, quotes the X-Request-Id, and leaks no
                        addresses, drivers, S3 keys or Rust internals.
"""

import os
import re
import uuid

import requests
import schemathesis
from hypothesis import strategies as st

KEY_A = os.environ["PREWARM_ST_KEY_A"]
KEY_B = os.environ["PREWARM_ST_KEY_B"]
ADMIN = os.environ.get("PREWARM_ST_ADMIN_TOKEN")
PRIVATE_A = os.environ.get("PREWARM_ST_TEMPLATE_PRIVATE")
PUBLIC_B = os.environ.get("PREWARM_ST_TEMPLATE_PUBLIC")
DESIGN_A = os.environ.get("PREWARM_ST_DESIGN")
BASE = os.environ.get("PREWARM_ST_BASE", "").rstrip("/")

HTTP = requests.Session()


# ---- authentication ---------------------------------------------------------


@schemathesis.auth(refresh_interval=None, retry_on=[])
class TenantA:
    def get(self, case, ctx):
        if ADMIN and case.operation.path.startswith("/admin/"):
            return ADMIN
        return KEY_A

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# ---- real ids in place of random ones ---------------------------------------


def _known_ids(method, path):
    """The real ids worth trying for this operation's `{id}`.

    A's own fixtures are only read, never edited or deleted (the run relies on them);
    B's public template is also edited and deleted: A must be refused (403).
    """
    templates = [i for i in (PRIVATE_A, PUBLIC_B) if i]
    if path.startswith("/templates/{id}") or path == "/admin/templates/{id}/sizing":
        return templates if method == "GET" else [i for i in (PUBLIC_B,) if i]
    if path == "/designs/{id}" and method == "GET":
        return [DESIGN_A] if DESIGN_A else []
    return []


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    op = ctx.operation
    known = _known_ids(op.method.upper(), op.path)
    # Only a valid generated id is swapped: a malformed one is a test of its own.
    if not known or not path_parameters or not _is_uuid(path_parameters.get("id")):
        return st.just(path_parameters)
    return st.sampled_from([path_parameters["id"], *known]).map(lambda i: {**path_parameters, "id": i})


@schemathesis.hook
def flatmap_body(ctx, body):
    op = ctx.operation
    templates = [i for i in (PRIVATE_A, PUBLIC_B) if i]
    if (op.method.upper(), op.path) != ("POST", "/designs") or not templates:
        return st.just(body)
    if not isinstance(body, dict) or not _is_uuid(body.get("template_id")):
        return st.just(body)
    return st.sampled_from([body["template_id"], *templates]).map(lambda i: {**body, "template_id": i})


# ---- valid cases: what no schema can state ------------------------------------

# Image parts: each accepted type gets samples that are that type, so a valid case's image parts
# are images (the API recognises them by their first bytes). Registered per media type, the
# strategies are what schemathesis draws for a form part the document encodes as that type.
IMAGE_SAMPLES = {
    # A 1x1 PNG: signature, IHDR, IDAT, IEND.
    "image/png": bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    ),
    "image/jpeg": bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9"),
    "image/gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x00;",
    "image/webp": b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00",
}
for _media_type, _sample in IMAGE_SAMPLES.items():
    schemathesis.openapi.media_type(_media_type, st.just(_sample))

EDITS_WITH_IF_MATCH = {("PATCH", "/templates/{id}"), ("PUT", "/templates/{id}/images")}
POLICIES = {("PUT", "/admin/templates/{id}/pool-policy"), ("PUT", "/admin/companies/{id}/pool-policy")}


def _positive(case):
    """A valid case: positive as a whole and in every component (a coverage case may keep a
    valid body beside an invalid header, and is then a negative case)."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return False
    return not any(info.mode.is_negative for info in (meta.components or {}).values())


def _current_etag(template_id):
    if not BASE or not _is_uuid(template_id):
        return None
    r = HTTP.get(f"{BASE}/templates/{template_id}", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    return r.headers.get("ETag") if r.status_code == 200 else None


def _valid_policy(body):
    """The generated policy with its windows made to fire and its targets ordered."""
    def clamp(n):
        return max(0, min(int(n), 10_000)) if isinstance(n, (int, float)) else n

    policy = {k: clamp(v) for k, v in body.items()}
    low = policy.get("min") if isinstance(policy.get("min"), int) else 0
    if isinstance(policy.get("max"), int) and policy["max"] < low:
        policy["max"] = low
    high = policy.get("max") if isinstance(policy.get("max"), int) else 10_000

    def inside(n):
        return min(max(n, low), high) if isinstance(n, int) else n

    if "target" in policy:
        policy["target"] = inside(policy["target"])
    windows = []
    for w in policy.get("windows") or []:
        w = {k: clamp(v) for k, v in w.items()}
        w["target"] = inside(w.get("target", low))
        if "start" in w or "end" in w:
            w.update(start="2030-01-01T09:00:00Z", end="2030-01-01T10:00:00Z")
        else:
            w["cron"] = "0 9 * * MON-FRI"
            if "time_zone" in w:
                w["time_zone"] = "Europe/Berlin"
        windows.append(w)
    if policy.get("windows") is not None:
        policy["windows"] = windows
    return policy


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not _positive(case):
        return None
    op = (case.operation.method.upper(), case.operation.path)
    if op in EDITS_WITH_IF_MATCH and case.headers:
        for name in [n for n in case.headers if n.lower() == "if-match"]:
            etag = _current_etag((case.path_parameters or {}).get("id"))
            if etag:
                case.headers[name] = etag
    if case.headers:
        # A key is a request's identity: one generated twice for two different requests is a
        # reuse (422), which the document states; a valid case gets a key of its own.
        for name in [n for n in case.headers if n.lower() == "idempotency-key"]:
            case.headers[name] = f"st-{uuid.uuid4()}"
    if op in POLICIES and isinstance(case.body, dict):
        case.body = _valid_policy(case.body)
    return None


# ---- check: no tenant reads another's private data --------------------------


def _as_b(response):
    """The same request (method, path, query, body) with B's key."""
    request = response.request.copy()
    request.headers["Authorization"] = f"Bearer {KEY_B}"
    return HTTP.send(request, timeout=30)


def _visibility(response, template_id):
    """The template's visibility as A sees it (None: A cannot see it)."""
    url = response.request.url
    base = url[: url.index("/", url.index("//") + 2)]
    r = HTTP.get(f"{base}/templates/{template_id}", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    return r.json().get("visibility") if r.status_code == 200 else None


def _listed_ids(body):
    """Every template or design id in a list answer."""
    if not isinstance(body, dict):
        return set()
    items = body.get("templates") or body.get("designs") or body.get("items") or []
    return {item.get("id") for item in items if isinstance(item, dict)}


def _private_ids(path, body):
    """The ids in A's 200 answer that only A may see: its designs and private templates."""
    if path.startswith("/designs"):
        items = body.get("designs", [body]) if isinstance(body, dict) else []
        return {d.get("id") for d in items if isinstance(d, dict)}
    items = (body.get("templates") or body.get("items") or [body]) if isinstance(body, dict) else []
    return {t.get("id") for t in items if isinstance(t, dict) and t.get("visibility") == "private"}


@schemathesis.check
def tenant_isolation(ctx, response, case):
    if case.operation.path.startswith("/admin/"):
        return None
    method, path = case.operation.method.upper(), case.operation.path
    template_id = (case.path_parameters or {}).get("id") if path.startswith("/templates/{id}") else None

    # A must never edit B's template.
    if method != "GET" and template_id == PUBLIC_B and response.status_code < 300:
        raise AssertionError(
            f"{method} {path} on tenant B's public template answered {response.status_code} to tenant A"
        )

    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None

    if method in ("PATCH", "PUT") and template_id:
        # A's edit went through: B's identical edit must be refused.
        expected = 403 if body.get("visibility") == "public" else 404
        got = _as_b(response).status_code
        if got != expected:
            raise AssertionError(f"tenant B replayed A's {method} {path}: {got}, expected {expected}")
        return None
    if method != "GET":
        return None

    # A resource only A may read: B gets 404.
    private_resource = path == "/designs/{id}" or (template_id and _visibility(response, template_id) == "private")
    replay = _as_b(response)
    if private_resource:
        if replay.status_code != 404:
            raise AssertionError(
                f"tenant B read tenant A's private {path} (id {case.path_parameters['id']}): "
                f"{replay.status_code}, expected 404\n{replay.text[:500]}"
            )
        return None
    # A list: none of A's private items may show up in B's answer.
    if replay.status_code == 200:
        leaked = _private_ids(path, body) & _listed_ids(replay.json())
        if leaked:
            raise AssertionError(
                f"GET {response.request.path_url} as tenant B lists tenant A's private {sorted(leaked)}"
            )
    return None


# ---- check: 5xx bodies are generic -------------------------------------------

# What must never reach a client: addresses, drivers and dependencies' own
# words, S3 keys, Redis keys, test database names, Rust paths and panics.
INTERNALS = re.compile(
    r"127\.0\.0\.1|localhost|:\d{4,5}\b|postgres|diesel|redis|fred|kafka|rdkafka|aws|s3|bucket"
    r"|dispatch|connection|SELECT |INSERT |UPDATE |DELETE FROM|designs/|templates/|pool:"
    r"|prewarm_|panicked|\.rs:\d+|::|db error|ERROR:|relation \"|duplicate key|constraint|timed out",
    re.IGNORECASE,
)


@schemathesis.check
def opaque_server_errors(ctx, response, case):
    if response.status_code < 500:
        return None
    text = response.content.decode("utf-8", "replace")
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"a {response.status_code} without the error envelope: {text[:500]!r}")
    request_id = (response.headers.get("x-request-id") or [None])[0]
    if not request_id or error.get("request_id") != request_id:
        raise AssertionError(
            f"a {response.status_code} whose request_id {error.get('request_id')!r} "
            f"is not its X-Request-Id {request_id!r}"
        )
    # The request id is the caller's own text when it sent a sane one: not a leak.
    found = INTERNALS.search(text.replace(request_id, ""))
    if found:
        raise AssertionError(f"a {response.status_code} body leaks {found.group(0)!r}: {text[:500]}")
    return None
