-- wrk script: CX WebhookRequests for one tag, from the template bench/bodies.py wrote (BENCH_TEMPLATE).
-- Customer numbering is bench/seed.py's: customer i has phone 090 + i (8 digits) and card 0 = i % 10000.
-- Environment:
--   BENCH_TEMPLATE  file with the JSON body and ${i} ${n} ${phone} ${caller} ${card} ${session} placeholders
--   BENCH_MODE      "random": customer = STRIDE * r + (r - STRIDE * r) % 4, r = random(0, COUNT - 1)
--                             (reads; session <prefix>-<i> verified; bench/seed.py spread_reader: customer r's
--                             number of cards whatever the stride)
--                   "next":   customer = START + k for k = 0, 1, 2 …     (each request its own session and card,
--                             so every lock and every wrong code is a real write)
--   BENCH_START, BENCH_COUNT, BENCH_STRIDE, BENCH_PREFIX, BENCH_SEED, BENCH_THREADS
--   BENCH_AUTH_HEADER, BENCH_AUTH_TOKEN  the caller credential (WEBHOOK_AUTH=header)
-- done() prints one JSON line: requests, duration, latency p50/p99/mean (µs), errors.

local mode = os.getenv("BENCH_MODE") or "random"
local start = tonumber(os.getenv("BENCH_START") or "0")
local count = tonumber(os.getenv("BENCH_COUNT") or "1")
local stride = tonumber(os.getenv("BENCH_STRIDE") or "1")
local prefix = os.getenv("BENCH_PREFIX") or "read"
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local root = "projects/bench/locations/global/agents/lockcard/sessions/"
local headers = {["Content-Type"] = "application/json", ["User-Agent"] = "Google-Dialogflow"}
if os.getenv("BENCH_AUTH_HEADER") then headers[os.getenv("BENCH_AUTH_HEADER")] = os.getenv("BENCH_AUTH_TOKEN") end

local template
do
  local fh = assert(io.open(os.getenv("BENCH_TEMPLATE"), "r"))
  template = fh:read("*a")
  fh:close()
end

local threads = {}
local id = 0
local sent = 0

function setup(thread)
  thread:set("thread_id", #threads)  -- a global in that thread's own Lua state
  table.insert(threads, thread)
end

function init(args)
  id = thread_id or 0
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") + id * 7919)
end

function request()
  local i
  if mode == "next" then
    i = start + id + nthreads * sent
  else
    local r = math.random(0, count - 1)
    i = stride * r + (r - stride * r) % 4
  end
  sent = sent + 1
  local phone = string.format("090%08d", i)
  local vals = {
    i = tostring(i), n = tostring(sent), phone = phone, caller = "+81" .. string.sub(phone, 2),
    card = string.format("%d.0", i % 10000), session = string.format("%s%s-%d", root, prefix, i),
  }
  local body = string.gsub(template, "%${(%w+)}", vals)
  return wrk.format("POST", "/webhook", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
end
