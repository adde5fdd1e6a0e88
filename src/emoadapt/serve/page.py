"""The HTML the app serves: the single page at ``/`` (``page.html``) and the offline API
reference at ``/docs`` (``docs.html``), both self-contained: inline style and script, no external
asset; ``CSP`` forbids any. The two files lie beside this module and are read once at import.

Page states (each checked in tests/test_browser.py): the start page shows only the file chooser;
a good image shows the image, the four-class answer with its confidence in plain words, the
affect outputs (with a sentence on how they relate to the four classes), the heat map (with a
caveat when the prediction is uncertain) and, on demand, the layer view; a file that cannot be
read clears everything of the previous image and shows only the error. With "faces" ticked, the
prediction asks for every face (``faces=true``): each box is drawn over the image with its number
and class, and listed with its class, expression and detection score; "No faces found" is said
when there is none (and why, when faces were too small). The layer view draws one
layer at a time on a canvas from the job's ``shares`` (no new request when another layer or the
shared colour scale is chosen, nor when the layer box is ticked again)."""

from importlib import resources

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; font-src 'none'")


def _html(name: str) -> str:
    return (resources.files(__package__) / name).read_text(encoding="utf-8")


#: ``/``: the page (``__DEPTH__`` and ``__MAXDEPTH__`` are filled in by the app)
PAGE = _html("page.html")
#: ``/docs``: the API reference rendered from ``/openapi.json`` by a few lines of inline script,
#: so it works offline (FastAPI's default Swagger UI loads its script and styles from a CDN).
DOCS_PAGE = _html("docs.html")
