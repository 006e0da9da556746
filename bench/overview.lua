-- wrk script of the benchmark's overview load: every request is for a random subscriber
-- i in 1..N, POSTing the same GraphQL body.
--
--   BENCH_N=100000 BENCH_BODY_FILE=body.json wrk -t2 -c32 -d20s --latency -s bench/overview.lua URL
--
-- BENCH_MODE=token (default): the header `Authorization: Bearer bench-token-{i}` (the live
--   access token bench/generate.py gives every subscriber) and the body as it is.
-- BENCH_MODE=id: no Authorization; every "{i}" in the body is replaced by i (PostGraphile,
--   which cannot read our tokens, is asked for the subscriber by id).
-- At the end one line `BENCH_RESULT {json}` sums up the run (latencies in microseconds);
-- answers that are not 200 or that carry "errors" are counted as bad.

local n = tonumber(os.getenv("BENCH_N") or "1000")
local mode = os.getenv("BENCH_MODE") or "token"
local body_file = os.getenv("BENCH_BODY_FILE")
local threads = {}

local function read_body()
   local f = assert(io.open(body_file, "rb"), "cannot read BENCH_BODY_FILE")
   local text = f:read("*a")
   f:close()
   return text
end

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local body, prefix, suffix
-- globals, so that done() can read them from each thread with thread:get
bad = 0
checked = 0

function init(args)
   math.randomseed(os.time() * 1000 + (tonumber(id) or 0) * 7919)
   body = read_body()
   if mode == "id" then
      local at = assert(body:find("{i}", 1, true), "the body has no {i}")
      prefix = body:sub(1, at - 1)
      suffix = body:sub(at + 3)
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   local i = math.random(1, n)
   if mode == "id" then
      return wrk.format(nil, nil, nil, prefix .. i .. suffix)
   end
   wrk.headers["Authorization"] = "Bearer bench-token-" .. i
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, text)
   checked = checked + 1
   if status ~= 200 or text:find('"errors"', 1, true) then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local bad_total, checked_total = 0, 0
   for _, thread in ipairs(threads) do
      bad_total = bad_total + (thread:get("bad") or 0)
      checked_total = checked_total + (thread:get("checked") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, ' ..
      '"p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "bad_answers": %d, ' ..
      '"checked": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
      '"timeout": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, bad_total, checked_total,
      e.connect, e.read, e.write, e.status, e.timeout))
end
