"""The web UI served by ``metatrail serve`` at ``/``: server-rendered pages (Jinja2, htmx
for partial updates), cytoscape.js for lineage, uPlot for charts.

Every page has a JSON twin (the same URL with ``.json``; ``/index.json`` for ``/``) built
by the same view function, so the UI and its data cannot drift; every view's state is in
its URL. The browser libraries are npm dependencies copied into ``static/vendor`` at build
time (setup.py); without them the API still serves and the UI's pages say what to run.

The server's ``create_app`` mounts it with :func:`metatrail.consumer.web.mount.mount_ui`.
"""
