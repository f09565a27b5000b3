"""`soundlm serve`: a local web page and a JSON API over the library's tasks (see `app.py` for the routes).

`ServeConfig` holds the models and limits, `create_app(config)` builds the FastAPI app (its
job queue starts with it), `serve(config)` runs it with uvicorn.
"""

from __future__ import annotations

from soundlm.serve.config import ServeConfig


def serve(config: ServeConfig) -> None:
    """Load the models and serve until interrupted (uvicorn on config.host:config.port)."""
    import uvicorn

    from soundlm.serve.app import create_app

    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")


__all__ = ["ServeConfig", "serve"]
