-- wrk script of the benchmark's webhook load: POST /webhooks/payments with precomputed
-- signed bodies, each payment once.
--
--   BENCH_WEBHOOK_FILE=events.tsv BENCH_THREADS=2 wrk -t2 -c32 -d20s -s bench/webhook.lua URL
--
-- BENCH_WEBHOOK_FILE has one line per payment: the raw JSON body, a TAB, its X-Signature.
-- Thread k of T sends lines k, k+T, k+2T, ... When a thread has sent all of its lines it
-- goes on replaying its first one (answered "already-applied", no effect), and the run
-- reports `exhausted`: make the file longer than the run can send.
-- At the end one line `BENCH_RESULT {json}` sums up the run (latencies in microseconds).

local file = os.getenv("BENCH_WEBHOOK_FILE")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local mine = {}
local next_index = 1
-- globals, so that done() can read them from each thread with thread:get
applied = 0
replayed = 0
bad = 0
sent = 0

function init(args)
   local k = tonumber(id) or 1
   local line_number = 0
   for line in io.lines(file) do
      line_number = line_number + 1
      if (line_number - 1) % nthreads == k - 1 then
         local tab = line:find("\t", 1, true)
         table.insert(mine, {line:sub(1, tab - 1), line:sub(tab + 1)})
      end
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   local event
   if next_index <= #mine then
      event = mine[next_index]
      next_index = next_index + 1
      sent = sent + 1
   else
      event = mine[1]
   end
   wrk.headers["X-Signature"] = event[2]
   return wrk.format(nil, nil, nil, event[1])
end

function response(status, headers, text)
   if status == 200 and text:find('"applied"', 1, true) then
      applied = applied + 1
   elseif status == 200 and text:find('"already-applied"', 1, true) then
      replayed = replayed + 1
   else
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local totals = {applied = 0, replayed = 0, bad = 0, sent = 0}
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + (thread:get(name) or 0)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "applied": %d, "replayed": %d, "bad_answers": %d, "sent": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, totals.applied, totals.replayed, totals.bad, totals.sent,
      e.connect, e.read, e.write, e.status, e.timeout))
end
