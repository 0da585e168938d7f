"""The HTTP service: ``POST /v1/completion/regex`` over a batching engine.

Modules, one job each:

* :mod:`~regexlm.server.app` -- :func:`create_app`: the Starlette app (routes, middleware, lifespan);
* :mod:`~regexlm.server.routes` -- the endpoints;
* :mod:`~regexlm.server.schema` -- strict validation of request bodies;
* :mod:`~regexlm.server.errors` -- the one JSON error shape;
* :mod:`~regexlm.server.auth` -- API keys and the bearer check;
* :mod:`~regexlm.server.limits` -- the limits and the body size middleware;
* :mod:`~regexlm.server.access_log` -- request ids and the access log;
* :mod:`~regexlm.server.metrics` -- Prometheus metrics;
* :mod:`~regexlm.server.compiler` -- pattern compilation off the loop, cached, time-limited;
* :mod:`~regexlm.server.engine` -- batching requests onto the generator from one worker thread;
* :mod:`~regexlm.server.streaming` -- Server-Sent Events;
* :mod:`~regexlm.server.command` -- ``regexlm serve``.
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """Build the service; see :func:`regexlm.server.app.create_app`."""
    from regexlm.server.app import create_app as build

    return build(*args, **kwargs)


__all__ = ["create_app"]
