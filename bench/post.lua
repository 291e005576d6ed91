-- wrk script: POST GO's ORDER_CREATED event with a different data.id each time (no dedupe hits).
-- Each wrk thread has its own Lua state with the same fixed random seed, so math.random and a
-- counter alone repeat across threads and runs (issue #14: a 3-second run of 5,307 requests
-- stored 2,662 events). The id is the run's start time, the thread's number and a counter.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread:set("run", string.format("%x", math.floor(os.clock() * 1e6) + os.time() * 1000000))
end
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local body = '{"event_id":"ORDER_CREATED","data":{"id":"' .. run .. '-' .. tid .. '-' .. counter ..
    '","code":"0000593098","utmId":"01407b89-b25d-4cac-a576-014158bb17a5",' ..
    '"date":{"date":"2021-03-02 21:02:53.000000","timezone_type":3,"timezone":"UTC"},"status":1,' ..
    '"user":{"id":2,"document":"123421341234","name":"teste","email":"teste@teste.com","phone":null,"cellphone":"123423434"}}}'
  return wrk.format(nil, wrk.path, nil, body)
end

-- With WRK_MEAN_DELAY_MS set, each connection waits a random (exponential) time before each
-- request: Poisson arrivals at a chosen rate, to read latency at that load, not at saturation.
local mean_delay = tonumber(os.getenv("WRK_MEAN_DELAY_MS") or "0")
if mean_delay > 0 then
  function delay()
    return -math.log(1 - math.random()) * mean_delay
  end
end
