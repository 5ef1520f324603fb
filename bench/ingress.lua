-- wrk script for bench/ingress.py: POST one signed 2 KiB body with GitHub's headers.
-- Usage: wrk ... -s bench/ingress.lua URL -- BODY_FILE SIGNATURE PATH
-- Each request carries its own X-GitHub-Delivery (the signature covers only the body),
-- so records spread over partitions as real deliveries do.
-- done() prints one JSON line the benchmark parses.

local threads = {}
local counter = 1

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1], "rb"))
   body = file:read("*a")
   file:close()
   signature = args[2]
   path = args[3]
   sent = 0
end

function request()
   sent = sent + 1
   return wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["X-GitHub-Event"] = "push",
      ["X-GitHub-Delivery"] = string.format("bench-%d-%d", tid, sent),
      ["X-Hub-Signature-256"] = signature,
   }, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
      '"non_2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
