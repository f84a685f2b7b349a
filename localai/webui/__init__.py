"""The web playground's static files (index.html, app.js, style.css, icon.svg), served by
``localai.api.routes.webui``. Plain files, no build step: what is here is what the browser gets."""
