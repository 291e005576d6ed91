"""The operator's surface over HTTP: the admin API (/admin/api) and the console (/console),
both off unless an admin token is set. tokens.py reads the gateway's and the shops' tokens, auth.py
says who may come in and what it may see, api.py answers, views.py turns store rows into what is
shown (masked), console.py renders the pages, jobs.py runs replays."""
