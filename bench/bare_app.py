"""Baseline for bench_ingest: a Litestar endpoint that only parses the JSON body and answers 202."""

import msgspec
from litestar import Litestar, Request, Response, post


@post("/hooks/go", status_code=202)
async def bare(request: Request) -> Response[dict]:
    event = msgspec.json.decode(await request.body())
    return Response({"event_id": event["event_id"], "id": "x", "deliveries": 0, "duplicate": False}, status_code=202)


app = Litestar([bare], logging_config=None)
