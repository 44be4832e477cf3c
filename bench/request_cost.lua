-- wrk script for bench/request_cost.py: the same request over and over, with a token of its own
-- per thread (BENCH_TOKENS, comma-separated) when BENCH_AUTH is 1.
--
--   METHOD, BENCH_PATH, BENCH_BODY   the request
--   BENCH_EXPECT                     the status every answer must have
--
-- done() prints one line, "RESULT {...}", which bench/request_cost.py reads.

local threads = {}

function setup(thread)
  local tokens = {}
  for token in string.gmatch(os.getenv("BENCH_TOKENS"), "[^,]+") do
    table.insert(tokens, token)
  end
  thread:set("token", tokens[#threads % #tokens + 1])
  table.insert(threads, thread)
end

function init(args)
  wrk.method = os.getenv("METHOD")
  wrk.path = os.getenv("BENCH_PATH")
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
  if os.getenv("BENCH_AUTH") == "1" then
    wrk.headers["Authorization"] = "Token " .. token
  end
  expected = tonumber(os.getenv("BENCH_EXPECT"))
  answers, failures = 0, 0
end

function response(status)
  answers = answers + 1
  if status ~= expected then
    failures = failures + 1
  end
end

function done(summary, latency)
  local answered, failed = 0, 0
  for _, thread in ipairs(threads) do
    answered = answered + thread:get("answers")
    failed = failed + thread:get("failures")
  end
  io.write(string.format('RESULT {"requests": %d, "seconds": %.3f, "failed": %d}\n',
    answered, summary.duration / 1e6, failed))
end
