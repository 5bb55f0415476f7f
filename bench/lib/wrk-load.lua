-- wrk script of the bench (bench/lib/wrk.mjs): request headers from the
-- environment, and at the end one machine-readable line with the counts and
-- the whole latency histogram (microseconds), so the bench can merge slices
-- into exact percentiles as it does for autocannon.
-- BENCH_WRK_HEADERS: "name: value" lines, sent with every request.
-- They go out in the order given, then the rest (Host) by name: wrk's own
-- wrk.format walks a Lua table, whose order differs from one wrk process to
-- the next, and a gateway that meets its requests' headers in a new order
-- deoptimises every function that reads one (docs/benchmark-history.md,
-- session 36), in the middle of a measured slice.
local order = {}
for line in (os.getenv("BENCH_WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then
    if wrk.headers[name] == nil then order[#order + 1] = name end
    wrk.headers[name] = value
  end
end

-- wrk.init formats the request once with this (a static request, as before).
function wrk.format(method, path, headers, body)
  method = method or wrk.method
  path = path or wrk.path
  headers = headers or wrk.headers
  body = body or wrk.body
  local lines, listed, rest = { string.format("%s %s HTTP/1.1", method, path) }, {}, {}
  for _, name in ipairs(order) do
    if headers[name] ~= nil then
      lines[#lines + 1] = name .. ": " .. headers[name]
      listed[name] = true
    end
  end
  for name in pairs(headers) do
    if not listed[name] then rest[#rest + 1] = name end
  end
  table.sort(rest)
  for _, name in ipairs(rest) do lines[#lines + 1] = name .. ": " .. headers[name] end
  if body then lines[#lines + 1] = "Content-Length: " .. string.len(body) end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""
  return table.concat(lines, "\r\n")
end

done = function(summary, latency, requests)
  local e = summary.errors
  local hist = {}
  for i = 1, #latency do
    local us, count = latency(i)
    hist[#hist + 1] = string.format("[%d,%d]", us, count)
  end
  io.write(string.format(
    'BENCH_WRK_RESULT {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latencyUs":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout, table.concat(hist, ",")))
end
