"""``emoadapt serve``: start the web app (:func:`emoadapt.serve.create_app`) with uvicorn."""

from __future__ import annotations

import argparse

from ._shared import CROP_HELP, FIT_CHOICES, MODEL_HELP, add_dncshap_options

NAME = "serve"
HELP = "start the web app (upload an image, see its emotion and explanation)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP,
                       description="Serves the page at / and the JSON API at /api/predict, /api/explain and "
                                   "/api/explain/layers (a background job; docs at /docs, offline). Needs the 'web' extra: pip install 'emoadapt[web]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--model", "--weights", dest="model", default=None, help=MODEL_HELP)
    p.add_argument("--crop", choices=FIT_CHOICES, default=None, help=CROP_HELP)
    p.add_argument("--max-upload-mb", type=float, default=10, help="largest upload in MiB (default 10)")
    p.add_argument("--timeout", type=float, default=30, help="seconds per request in the model (default 30)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="explanations and layer jobs at once (the explain lane; default 2)")
    p.add_argument("--predict-slots", type=int, default=2,
                   help="predictions at once (the predict lane, separate from the explain lane; default 2)")
    p.add_argument("--read-timeout", type=float, default=10,
                   help="seconds without a byte from a client in the middle of a request before it is cut off "
                        "with 408 (default 10)")
    p.add_argument("--upload-timeout", type=float, default=60,
                   help="seconds to receive one upload (default 60)")
    p.add_argument("--shutdown-timeout", type=int, default=5,
                   help="seconds a stopping server waits for running requests before cancelling them (default 5)")
    add_dncshap_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import EmoadaptError

    try:
        from ..serve import create_app
        from ..serve.server import run as run_server
    except ImportError as exc:
        raise EmoadaptError(f"the web app needs the 'web' extra ({exc.name} is missing): "
                            "pip install 'emoadapt[web]'") from None
    from ..predictor import Predictor

    predictor = Predictor(args.model, fit=args.crop)  # load now: a bad --model fails here, not at the first request
    try:
        app = create_app(predictor, model=args.model, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         timeout_s=args.timeout, max_concurrency=args.concurrency,
                         predict_slots=args.predict_slots, depth=args.depth, max_evals=args.max_evals,
                         read_timeout_s=args.read_timeout, upload_timeout_s=args.upload_timeout)
    except ValueError as exc:  # a limit out of range (--depth above 10, --concurrency 0…)
        raise EmoadaptError(str(exc)) from None
    run_server(app, host=args.host, port=args.port, read_timeout_s=args.read_timeout,
               shutdown_timeout_s=args.shutdown_timeout)
    return 0
