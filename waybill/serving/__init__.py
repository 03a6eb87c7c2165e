"""How `waybill serve` runs the WSGI app under gunicorn.

``config`` derives gunicorn's settings (workers from the CPU count, timeouts, header limits);
``worker`` is the gthread worker that reads request heads and bodies without holding a thread, and
answers malformed requests with a short JSON error; ``gunicorn_log`` sends gunicorn's own log lines
through the project's JSON formatter with the same scrubbing of client-supplied text.
"""
