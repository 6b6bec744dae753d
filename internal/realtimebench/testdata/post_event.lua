-- wrk script: POSTs user events in the seed's shape to the realtime
-- pipeline's http_ingest (sync_response: true), docs/BENCHMARKS.md
-- "Real-time over Kafka and HTTP".
--
--   wrk -t2 -c16 -d20s --latency -s post_event.lua http://ADDR/v1/events
--   BATCH=100 wrk ... (an NDJSON body of 100 events per request)
--
-- Each event has a random user of 1..1000, gen_events.py's type mix
-- (50/25/10/5/10) and the current UTC time as its timestamp, so a user's
-- events never fall an hour behind its latest and features accepts them.
-- A single event is answered 200 with its prediction (422 if rejected,
-- which wrk counts as non-2xx); a batch is answered 200 with an array, so
-- the script counts the predictions in each answer and prints, at the end,
-- how many events got one and how many did not.

local batch = tonumber(os.getenv("BATCH") or "1")
local types = { "page_view", "click", "add_to_cart", "purchase", "search" }
local weights = { 50, 25, 10, 5, 10 }

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 100 + id)
  predicted = 0
  missing = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function event_type()
  local r = math.random(1, 100)
  for i, w in ipairs(weights) do
    if r <= w then
      return types[i]
    end
    r = r - w
  end
  return types[#types]
end

local function event(ts)
  local t = event_type()
  local data
  if t == "purchase" then
    data = string.format('{"amount":%.2f,"product_id":%d}', math.random(500, 50000) / 100, math.random(1, 500))
  else
    data = string.format('{"page":"/products/%d"}', math.random(1, 500))
  end
  return string.format('{"user_id":%d,"event_type":"%s","event_data":%s,"timestamp":"%s"}',
    math.random(1, 1000), t, data, ts)
end

function request()
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local lines = {}
  for i = 1, batch do
    lines[i] = event(ts)
  end
  return wrk.format(nil, nil, nil, table.concat(lines, "\n"))
end

function response(status, headers, body)
  if status ~= 200 then
    missing = missing + batch
    return
  end
  local _, n = string.gsub(body, '"prediction":', "")
  predicted = predicted + n
  missing = missing + batch - n
end

function done(summary, latency, requests)
  local p, m = 0, 0
  for _, t in ipairs(threads) do
    p = p + t:get("predicted")
    m = m + t:get("missing")
  end
  io.write(string.format("events per request: %d\n", batch))
  io.write(string.format("events predicted: %d, events without a prediction: %d\n", p, m))
  io.write(string.format("events/s predicted: %.0f\n", p / (summary.duration / 1e6)))
end
