"""One module per resource; each exports ``on_<endpoint>(app, request, **route_values)`` handlers.
The route table that maps URLs to them is ``localai.api.app.ROUTES``."""
