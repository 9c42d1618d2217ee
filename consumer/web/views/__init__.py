"""The UI's pages, one module per kind of view; each lists its ``PAGES``
(path, template, view function)."""
