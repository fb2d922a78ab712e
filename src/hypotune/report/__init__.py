"""The report: a study's decisions as Markdown and HTML with figures (build), the figures' data
and drawing (figures), and the Jinja2 templates that lay the blocks out (templates/)."""
