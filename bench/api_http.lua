-- wrk script for bench/api_http.py: each wrk thread is one API client with one connection and
-- a token of its own (BENCH_TOKENS, comma-separated), so "-t8 -c8" is eight concurrent clients.
--
--   approve <file>  POST /api/v1/approvals/<id>/approve/ for this client's share of the pending
--                   request ids in <file>, one per line (the ids are dealt out round-robin).
--   claim           POST /api/v1/claims/ for a new story, then release that claim with the lease
--                   token of the grant, and again.
--
-- done() prints one line, "RESULT {...}", which bench/api_http.py reads.

local clients = {}

function setup(thread)
  local number = #clients
  local tokens = {}
  for token in string.gmatch(os.getenv("BENCH_TOKENS"), "[^,]+") do
    table.insert(tokens, token)
  end
  thread:set("number", number)
  thread:set("count", #tokens)
  thread:set("token", tokens[number % #tokens + 1])
  table.insert(clients, thread)
end

function init(args)
  mode = args[1]
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Token " .. token
  wrk.headers["Content-Type"] = "application/json"
  done_writes, failures, repeats, first_failure = 0, 0, 0, ""
  if mode == "approve" then
    ids, next_id = {}, 1
    local line_number = 0
    for line in io.lines(args[2]) do
      if line_number % count == number then
        table.insert(ids, line)
      end
      line_number = line_number + 1
    end
  else
    stories, to_release, lease_token = 0, nil, nil
  end
end

function request()
  if mode == "approve" then
    local id = ids[next_id]
    next_id = next_id % #ids + 1
    sent = "approve"
    return wrk.format(nil, "/api/v1/approvals/" .. id .. "/approve/", nil, "{}")
  end
  if to_release then
    local id = to_release
    to_release = nil
    sent = "release"
    return wrk.format(nil, "/api/v1/claims/" .. id .. "/release/", nil,
      string.format('{"agent_id": "bench-agent-%d", "lease_token": "%s"}', number, lease_token))
  end
  stories = stories + 1
  sent = "claim"
  return wrk.format(nil, "/api/v1/claims/", nil, string.format(
    '{"story": "BENCH-%d-%d", "todolist": "bench", "agent_id": "bench-agent-%d", '
    .. '"fingerprint": "bench-%d"}', number, stories, number, number))
end

function response(status, headers, body)
  local expected = 200
  if sent == "claim" then
    expected = 201
  end
  if status ~= expected then
    failures = failures + 1
    if first_failure == "" then
      first_failure = status .. " " .. string.sub(body, 1, 200)
    end
  elseif sent == "approve" and not string.find(body, '"changed":true', 1, true) then
    -- Every pending request was decided and the ids came round again: too few requests.
    repeats = repeats + 1
  elseif sent == "claim" then
    -- Only the holder's lease token (in the grant answer, and only there) releases a claim.
    to_release = string.match(body, '"id":([0-9]+)')
    lease_token = string.match(body, '"lease_token":"([^"]+)"')
  end
  done_writes = done_writes + 1
end

function done(summary, latency, requests)
  local writes, failed, repeated, failure = 0, 0, 0, ""
  for _, client in ipairs(clients) do
    writes = writes + client:get("done_writes")
    failed = failed + client:get("failures")
    repeated = repeated + client:get("repeats")
    if failure == "" then
      failure = client:get("first_failure")
    end
  end
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, '
    .. '"max_ms": %.2f, "failed": %d, "repeated": %d, "socket_errors": %d, "failure": "%s"}\n',
    writes, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, failed, repeated,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout,
    (string.gsub(failure, '["\\%c]', " "))))
end
