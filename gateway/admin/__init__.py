"""The operator's surface over HTTP: the admin API (/admin/api) and the console (/console),
both off unless GATEWAY_ADMIN_TOKEN is set. auth.py says who may come in, api.py answers, views.py
turns store rows into what is shown (masked), console.py renders the pages, jobs.py runs replays."""
