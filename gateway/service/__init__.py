"""The running service: the HTTP app (`app`), how its parts are laid out in processes
(`topology`), the delivery service assembled once (`delivery_service`), the child processes of
`gateway serve` (`child_process`, `ingest_child`, `delivery_child`), uvicorn (`server`), hot
reload (`reload`), logging (`logs`), metrics (`metrics`) and the garbage collector kept off the
hot path (`gc_freeze`)."""
